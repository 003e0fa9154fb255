"""A catalogue of real PCI device models, so simulated hosts look like real ones.

Vendor, device and class ids and the VF device ids are the real ones (they match the pci.ids
database). Subsystem ids are those of one common retail card of the family. SR-IOV limits are
the values the kernel reports in ``sriov_totalvfs`` on a typical card, and they are per physical
function (PF):

- Intel X710 (i40e): 64 per PF on the 2-port X710-DA2 (the driver allows 128 per device).
- Intel E810 (ice): 128 per PF on 2-port cards (ICE_MAX_SRIOV_VFS is 256 per device).
- Intel 82599 (ixgbe): 63 per PF (64 pools minus the PF's own).
- Mellanox ConnectX-5/6/6 Dx (mlx5_core): set in firmware (NUM_OF_VFS); 127 is the usual maximum.
- Intel QAT C62x and 4xxx: 16 per PF (each QAT endpoint is its own PF).
- QEMU NVMe: whatever ``sriov_max_vfs`` says; up to 127 (NVME_MAX_VFS).

The VF placement follows each family's SR-IOV capability: the routing-id offset of the first VF
of PF 0 (``first_vf_offset``) and whether the VFs of several PFs are packed one PF after the other
(most devices) or interleaved with a stride equal to the PF count (82599: ``04:10.0`` and
``04:10.2`` belong to PF 0, ``04:10.1`` to PF 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from pcifleet.domain.errors import InvalidProfile


class DeviceKind(StrEnum):
    """Which profile section a model belongs to (NICs, GPUs, ...)."""

    NIC = "nic"
    GPU = "gpu"
    ACCELERATOR = "accelerator"
    NVME = "nvme"
    BRIDGE = "bridge"
    CHIPSET = "chipset"


class VfLayout(StrEnum):
    """How the VFs of a multi-PF card share the routing-id space."""

    PACKED = "packed"
    INTERLEAVED = "interleaved"


@dataclass(frozen=True, slots=True)
class PciLink:
    """PCIe link as ``current_link_speed`` / ``current_link_width`` show it."""

    speed: str
    width: int


@dataclass(frozen=True, slots=True)
class SriovCaps:
    """The SR-IOV capability of a PF model."""

    vf_device_id: int
    max_vfs: int
    vf_driver: str | None
    first_vf_offset: int
    layout: VfLayout = VfLayout.PACKED
    #: QEMU mirrors the PF's link registers into its VFs; real VFs read "Unknown" / 0.
    vf_link_reported: bool = False


@dataclass(frozen=True, slots=True)
class DeviceModel:
    """One device model as the kernel would present each of its physical functions."""

    name: str
    kind: DeviceKind
    description: str
    vendor_id: int
    device_id: int
    subsystem_vendor_id: int
    subsystem_device_id: int
    revision: int
    class_code: int
    driver: str | None
    #: physical functions on one card (ports of a NIC); a profile may enable fewer
    ports: int = 1
    #: None for conventional PCI functions, which have no link attributes
    link: PciLink | None = None
    sriov: SriovCaps | None = None
    #: link speed of the netdev in Mb/s; None for functions without a netdev
    netdev_speed: int | None = None
    #: the netdev hangs under a virtio device (``virtio0/net/eth1``) instead of ``net/``
    nested_netdev: bool = False
    #: the driver registers devlink ports: ``phys_port_name`` / ``phys_switch_id`` readable
    devlink_ports: bool = False
    #: the driver creates ``nvme/nvmeN`` controller children
    nvme_controller: bool = False

    @property
    def is_network(self) -> bool:
        return self.netdev_speed is not None


_GEN1 = PciLink("2.5 GT/s PCIe", 1)
_GEN2_X8 = PciLink("5.0 GT/s PCIe", 8)
_GEN3_X8 = PciLink("8.0 GT/s PCIe", 8)
_GEN3_X16 = PciLink("8.0 GT/s PCIe", 16)
_GEN4_X4 = PciLink("16.0 GT/s PCIe", 4)
_GEN4_X8 = PciLink("16.0 GT/s PCIe", 8)
_GEN4_X16 = PciLink("16.0 GT/s PCIe", 16)
_GEN5_X16 = PciLink("32.0 GT/s PCIe", 16)

ETHERNET: Final = 0x020000
NVME_CLASS: Final = 0x010802
DISPLAY_3D: Final = 0x030200
COPROCESSOR: Final = 0x0B4000
PCI_BRIDGE: Final = 0x060400
HOST_BRIDGE: Final = 0x060000


def _mlx5(
    name: str, description: str, device: int, vf: int, sub: int, link: PciLink
) -> DeviceModel:
    return DeviceModel(
        name=name,
        kind=DeviceKind.NIC,
        description=description,
        vendor_id=0x15B3,
        device_id=device,
        subsystem_vendor_id=0x15B3,
        subsystem_device_id=sub,
        revision=0x00,
        class_code=ETHERNET,
        driver="mlx5_core",
        ports=2,
        link=link,
        sriov=SriovCaps(vf_device_id=vf, max_vfs=127, vf_driver="mlx5_core", first_vf_offset=2),
        netdev_speed=100000 if link is _GEN4_X16 else 25000,
        devlink_ports=True,
    )


_MODELS: tuple[DeviceModel, ...] = (
    DeviceModel(
        name="intel-x710",
        kind=DeviceKind.NIC,
        description="Intel Ethernet Controller X710 for 10GbE SFP+ (X710-DA2)",
        vendor_id=0x8086,
        device_id=0x1572,
        subsystem_vendor_id=0x8086,
        subsystem_device_id=0x0007,
        revision=0x02,
        class_code=ETHERNET,
        driver="i40e",
        ports=2,
        link=_GEN3_X8,
        sriov=SriovCaps(vf_device_id=0x154C, max_vfs=64, vf_driver="iavf", first_vf_offset=16),
        netdev_speed=10000,
    ),
    DeviceModel(
        name="intel-e810-xxv",
        kind=DeviceKind.NIC,
        description="Intel Ethernet Controller E810-XXV for SFP (E810-XXV-2)",
        vendor_id=0x8086,
        device_id=0x159B,
        subsystem_vendor_id=0x8086,
        subsystem_device_id=0x0003,
        revision=0x02,
        class_code=ETHERNET,
        driver="ice",
        ports=2,
        link=_GEN4_X8,
        sriov=SriovCaps(vf_device_id=0x1889, max_vfs=128, vf_driver="iavf", first_vf_offset=8),
        netdev_speed=25000,
        devlink_ports=True,
    ),
    DeviceModel(
        name="intel-e810-c",
        kind=DeviceKind.NIC,
        description="Intel Ethernet Controller E810-C for QSFP (E810-C-Q2)",
        vendor_id=0x8086,
        device_id=0x1592,
        subsystem_vendor_id=0x8086,
        subsystem_device_id=0x0002,
        revision=0x02,
        class_code=ETHERNET,
        driver="ice",
        ports=2,
        link=_GEN4_X16,
        sriov=SriovCaps(vf_device_id=0x1889, max_vfs=128, vf_driver="iavf", first_vf_offset=8),
        netdev_speed=100000,
        devlink_ports=True,
    ),
    DeviceModel(
        name="intel-82599",
        kind=DeviceKind.NIC,
        description="Intel 82599ES 10-Gigabit SFI/SFP+ Network Connection (X520-DA2)",
        vendor_id=0x8086,
        device_id=0x10FB,
        subsystem_vendor_id=0x8086,
        subsystem_device_id=0x0002,
        revision=0x01,
        class_code=ETHERNET,
        driver="ixgbe",
        ports=2,
        link=_GEN2_X8,
        sriov=SriovCaps(
            vf_device_id=0x10ED,
            max_vfs=63,
            vf_driver="ixgbevf",
            first_vf_offset=0x80,
            layout=VfLayout.INTERLEAVED,
        ),
        netdev_speed=10000,
    ),
    _mlx5(
        "mellanox-cx5",
        "Mellanox MT27800 Family [ConnectX-5] (MCX512A-ACAT)",
        0x1017,
        0x1018,
        0x0020,
        _GEN3_X8,
    ),
    _mlx5(
        "mellanox-cx6",
        "Mellanox MT28908 Family [ConnectX-6]",
        0x101B,
        0x101C,
        0x0028,
        _GEN4_X16,
    ),
    _mlx5(
        "mellanox-cx6dx",
        "Mellanox MT2892 Family [ConnectX-6 Dx]",
        0x101D,
        0x101E,
        0x0016,
        _GEN4_X16,
    ),
    DeviceModel(
        name="nvidia-a100",
        kind=DeviceKind.GPU,
        description="NVIDIA GA100 [A100 PCIe 80GB]",
        vendor_id=0x10DE,
        device_id=0x20B5,
        subsystem_vendor_id=0x10DE,
        subsystem_device_id=0x1533,
        revision=0xA1,
        class_code=DISPLAY_3D,
        driver="nvidia",
        link=_GEN4_X16,
    ),
    DeviceModel(
        name="nvidia-h100-sxm",
        kind=DeviceKind.GPU,
        description="NVIDIA GH100 [H100 SXM5 80GB]",
        vendor_id=0x10DE,
        device_id=0x2330,
        subsystem_vendor_id=0x10DE,
        subsystem_device_id=0x16C1,
        revision=0xA1,
        class_code=DISPLAY_3D,
        driver="nvidia",
        link=_GEN5_X16,
    ),
    DeviceModel(
        name="intel-qat-c62x",
        kind=DeviceKind.ACCELERATOR,
        description="Intel C62x Chipset QuickAssist Technology",
        vendor_id=0x8086,
        device_id=0x37C8,
        subsystem_vendor_id=0x8086,
        subsystem_device_id=0x0000,
        revision=0x04,
        class_code=COPROCESSOR,
        driver="c6xx",
        link=_GEN3_X16,
        sriov=SriovCaps(vf_device_id=0x37C9, max_vfs=16, vf_driver="c6xxvf", first_vf_offset=8),
    ),
    DeviceModel(
        name="intel-qat-4xxx",
        kind=DeviceKind.ACCELERATOR,
        description="Intel 4xxx QuickAssist Technology (Sapphire Rapids)",
        vendor_id=0x8086,
        device_id=0x4940,
        subsystem_vendor_id=0x8086,
        subsystem_device_id=0x0000,
        revision=0x40,
        class_code=COPROCESSOR,
        driver="4xxx",
        link=_GEN4_X16,
        sriov=SriovCaps(vf_device_id=0x4941, max_vfs=16, vf_driver="4xxxvf", first_vf_offset=1),
    ),
    DeviceModel(
        name="samsung-pm9a3",
        kind=DeviceKind.NVME,
        description="Samsung NVMe SSD Controller PM9A1/PM9A3/980PRO (PM9A3 U.2)",
        vendor_id=0x144D,
        device_id=0xA80A,
        subsystem_vendor_id=0x144D,
        subsystem_device_id=0xA813,
        revision=0x00,
        class_code=NVME_CLASS,
        driver="nvme",
        link=_GEN4_X4,
        nvme_controller=True,
    ),
    DeviceModel(
        name="qemu-nvme",
        kind=DeviceKind.NVME,
        description="QEMU NVM Express Controller (SR-IOV capable)",
        vendor_id=0x1B36,
        device_id=0x0010,
        subsystem_vendor_id=0x1AF4,
        subsystem_device_id=0x1100,
        revision=0x02,
        class_code=NVME_CLASS,
        driver="nvme",
        link=_GEN1,
        sriov=SriovCaps(
            vf_device_id=0x0010,
            max_vfs=127,
            vf_driver="nvme",
            first_vf_offset=1,
            vf_link_reported=True,
        ),
        nvme_controller=True,
    ),
    DeviceModel(
        name="qemu-e1000e",
        kind=DeviceKind.NIC,
        description="Intel 82574L Gigabit Network Connection (QEMU e1000e)",
        vendor_id=0x8086,
        device_id=0x10D3,
        subsystem_vendor_id=0x8086,
        subsystem_device_id=0x0000,
        revision=0x00,
        class_code=ETHERNET,
        driver="e1000e",
        link=_GEN1,
        netdev_speed=1000,
    ),
    DeviceModel(
        name="qemu-virtio-net",
        kind=DeviceKind.NIC,
        description="Red Hat Virtio 1.0 network device",
        vendor_id=0x1AF4,
        device_id=0x1041,
        subsystem_vendor_id=0x1AF4,
        subsystem_device_id=0x1100,
        revision=0x01,
        class_code=ETHERNET,
        driver="virtio-pci",
        link=_GEN1,
        netdev_speed=-1,
        nested_netdev=True,
    ),
    DeviceModel(
        name="intel-root-port",
        kind=DeviceKind.BRIDGE,
        description="Intel Sky Lake-E PCI Express Root Port A",
        vendor_id=0x8086,
        device_id=0x2030,
        subsystem_vendor_id=0x8086,
        subsystem_device_id=0x0000,
        revision=0x04,
        class_code=PCI_BRIDGE,
        driver="pcieport",
        link=_GEN3_X16,
    ),
    DeviceModel(
        name="qemu-root-port",
        kind=DeviceKind.BRIDGE,
        description="QEMU PCIe Root Port",
        vendor_id=0x1B36,
        device_id=0x000C,
        subsystem_vendor_id=0x1B36,
        subsystem_device_id=0x0000,
        revision=0x00,
        class_code=PCI_BRIDGE,
        driver="pcieport",
        link=_GEN1,
    ),
    DeviceModel(
        name="q35-host-bridge",
        kind=DeviceKind.CHIPSET,
        description="Intel 82G33/G31/P35/P31 Express DRAM Controller (QEMU q35)",
        vendor_id=0x8086,
        device_id=0x29C0,
        subsystem_vendor_id=0x1AF4,
        subsystem_device_id=0x1100,
        revision=0x00,
        class_code=HOST_BRIDGE,
        driver=None,
    ),
    DeviceModel(
        name="qemu-pxb-pcie",
        kind=DeviceKind.CHIPSET,
        description="QEMU PCIe expander bridge",
        vendor_id=0x1B36,
        device_id=0x000B,
        subsystem_vendor_id=0x1AF4,
        subsystem_device_id=0x1100,
        revision=0x00,
        class_code=HOST_BRIDGE,
        driver=None,
    ),
    DeviceModel(
        name="ich9-lpc",
        kind=DeviceKind.CHIPSET,
        description="Intel 82801IB (ICH9) LPC Interface Controller",
        vendor_id=0x8086,
        device_id=0x2918,
        subsystem_vendor_id=0x1AF4,
        subsystem_device_id=0x1100,
        revision=0x02,
        class_code=0x060100,
        driver="lpc_ich",
    ),
    DeviceModel(
        name="ich9-ahci",
        kind=DeviceKind.CHIPSET,
        description="Intel 82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]",
        vendor_id=0x8086,
        device_id=0x2922,
        subsystem_vendor_id=0x1AF4,
        subsystem_device_id=0x1100,
        revision=0x02,
        class_code=0x010601,
        driver="ahci",
    ),
    DeviceModel(
        name="ich9-smbus",
        kind=DeviceKind.CHIPSET,
        description="Intel 82801I (ICH9 Family) SMBus Controller",
        vendor_id=0x8086,
        device_id=0x2930,
        subsystem_vendor_id=0x1AF4,
        subsystem_device_id=0x1100,
        revision=0x02,
        class_code=0x0C0500,
        driver="i801_smbus",
    ),
)

#: every model by name
MODELS: Final[Mapping[str, DeviceModel]] = MappingProxyType({m.name: m for m in _MODELS})

_BY_PF_ID: Final[Mapping[tuple[int, int], DeviceModel]] = MappingProxyType(
    {(m.vendor_id, m.device_id): m for m in reversed(_MODELS)}
)


def model_names(kind: DeviceKind | None = None) -> tuple[str, ...]:
    """Names of the models (of one kind), sorted."""
    return tuple(sorted(m.name for m in _MODELS if kind is None or m.kind is kind))


def get_model(name: str, *, field: str = "model") -> DeviceModel:
    """The model called ``name``; an unknown name is an ``InvalidProfile`` naming ``field``."""
    model = MODELS.get(name)
    if model is None:
        raise InvalidProfile(
            f"{field}: unknown model {name!r} (known: {', '.join(model_names())})",
            field=field,
            rule="unknown_model",
        )
    return model


def find_by_ids(vendor_id: int, device_id: int) -> DeviceModel | None:
    """The model whose PF has these ids, if catalogued (the first listed wins)."""
    return _BY_PF_ID.get((vendor_id, device_id))
