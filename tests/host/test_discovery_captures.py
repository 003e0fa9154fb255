"""Parity with the real-kernel captures: every fact their README lists, read by discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceType
from pcifleet.host.discovery import scan
from pcifleet.host.model import HostScan, PciFunction
from pcifleet.host.pciclass import DeviceKind
from pcifleet.host.sysfs import SysfsReader

PF0 = "0000:21:00.0"
PF1 = "0000:41:00.0"
VFS_OF_PF0 = ["0000:21:00.1", "0000:21:00.2", "0000:21:00.3", "0000:21:00.4"]
VFS_OF_PF1 = [
    "0000:41:00.1",
    "0000:41:00.2",
    "0000:41:00.3",
    "0000:41:00.4",
    "0000:41:00.5",
    "0000:41:00.6",
    "0000:41:00.7",
    "0000:41:01.0",
]
BUS0 = ["0000:00:00.0", "0000:00:01.0", "0000:00:02.0", "0000:00:1f.0", "0000:00:1f.2"]
ICH9 = ["0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3"]


@pytest.fixture(scope="module")
def sriov(sriov_capture: Path) -> HostScan:
    return scan(SysfsReader(sriov_capture), pci_ids=False)


@pytest.fixture(scope="module")
def novfs(novfs_capture: Path) -> HostScan:
    return scan(SysfsReader(novfs_capture), pci_ids=False)


def fn(result: HostScan, address: str) -> PciFunction:
    function = result.get(address)
    assert function is not None, f"{address} missing from the scan"
    return function


def test_counts_match_the_manifest(sriov: HostScan, novfs: HostScan) -> None:
    assert len(sriov) == 26
    assert [f.role for f in sriov].count(DeviceType.PF) == 2
    assert [f.role for f in sriov].count(DeviceType.VF) == 12
    assert len(novfs) == 14
    assert sriov.warnings == ()
    assert novfs.warnings == ()


@pytest.mark.parametrize(
    ("pf", "total", "vfs"),
    [(PF0, 4, VFS_OF_PF0), (PF1, 8, VFS_OF_PF1)],
)
def test_pf_sriov_attributes_and_virtfn_links(
    sriov: HostScan, pf: str, total: int, vfs: list[str]
) -> None:
    function = fn(sriov, pf)
    assert function.role is DeviceType.PF
    assert function.sriov is not None
    assert function.sriov.totalvfs == total
    assert function.sriov.numvfs == total
    assert (function.sriov.offset, function.sriov.stride) == (1, 1)
    assert function.sriov.vf_device_id == "0010"  # sysfs writes "10", no 0x prefix
    assert [(i, str(a)) for i, a in function.sriov.vfs] == list(enumerate(vfs))
    assert [str(vf.address) for vf in sriov.vfs_of(function.address)] == vfs


@pytest.mark.parametrize(
    ("vf", "pf", "index"),
    [
        *((vf, PF0, i) for i, vf in enumerate(VFS_OF_PF0)),
        *((vf, PF1, i) for i, vf in enumerate(VFS_OF_PF1)),
    ],
)
def test_each_vf_knows_its_pf_and_index(sriov: HostScan, vf: str, pf: str, index: int) -> None:
    function = fn(sriov, vf)
    assert function.role is DeviceType.VF
    assert function.physfn == PciAddress.parse(pf)
    assert function.vf_index == index
    assert function.sriov is None
    assert (function.vendor_id, function.device_id) == ("1b36", "0010")


def test_ari_eighth_vf_is_next_slot(sriov: HostScan) -> None:
    pf = fn(sriov, PF1)
    assert pf.sriov is not None
    index, eighth = pf.sriov.vfs[7]
    assert (index, str(eighth)) == (7, "0000:41:01.0")
    assert eighth == pf.address.offset(1 + 7)  # offset 1, stride 1: routing id + 8
    assert "0000:41:00.8" not in {str(f.address) for f in sriov}
    assert fn(sriov, "0000:41:01.0").vf_index == 7


@pytest.mark.parametrize(
    ("address", "node", "cpus"),
    [
        ("0000:20:00.0", 0, {0}),
        (PF0, 0, {0}),
        ("0000:21:00.3", 0, {0}),
        ("0000:22:00.0", 0, {0}),
        ("0000:40:01.0", 1, {1}),
        (PF1, 1, {1}),
        ("0000:41:01.0", 1, {1}),
        ("0000:42:00.0", 1, {1}),
        *((address, None, {0, 1}) for address in BUS0),
    ],
)
def test_numa_node_and_local_cpus(
    sriov: HostScan, address: str, node: int | None, cpus: set[int]
) -> None:
    function = fn(sriov, address)
    assert function.numa_node == node  # the kernel's -1 reads as None
    assert function.local_cpus == cpus


def test_iommu_groups_one_per_vf_and_shared_by_ich9(sriov: HostScan) -> None:
    vf_groups = [fn(sriov, vf).iommu_group for vf in VFS_OF_PF0 + VFS_OF_PF1]
    assert None not in vf_groups
    assert len(set(vf_groups)) == 12
    assert len({fn(sriov, a).iommu_group for a in ICH9}) == 1
    assert fn(sriov, "0000:00:1f.0").iommu_group not in vf_groups
    assert fn(sriov, PF1).iommu_group == 6
    assert fn(sriov, "0000:41:00.5").iommu_group == 20


@pytest.mark.parametrize(
    ("address", "driver", "override"),
    [
        (PF0, "nvme", None),
        (PF1, "nvme", None),
        ("0000:21:00.1", "nvme", None),
        ("0000:21:00.2", "nvme", None),
        ("0000:21:00.3", "vfio-pci", "vfio-pci"),
        ("0000:21:00.4", None, None),
        ("0000:41:00.1", "nvme", None),
        ("0000:41:00.4", "nvme", None),
        ("0000:41:00.5", "vfio-pci", "vfio-pci"),
        ("0000:41:00.6", "vfio-pci", "vfio-pci"),
        ("0000:41:00.7", None, None),
        ("0000:41:01.0", None, None),
        ("0000:22:00.0", "e1000e", None),
        ("0000:42:00.0", "virtio-pci", None),
        ("0000:00:00.0", None, None),
    ],
)
def test_drivers_and_driver_override(
    sriov: HostScan, address: str, driver: str | None, override: str | None
) -> None:
    function = fn(sriov, address)
    assert function.driver == driver
    assert function.driver_override == override  # "(null)" reads as None


def test_netdev_directly_under_e1000e(sriov: HostScan) -> None:
    (eth0,) = fn(sriov, "0000:22:00.0").netdevs
    assert eth0.name == "eth0"
    assert eth0.mac == "52:54:00:00:20:01"
    assert eth0.operstate == "up"
    assert eth0.speed_mbps == 1000
    assert eth0.mtu == 1500
    assert eth0.phys_port_name is None  # QEMU has no switchdev NIC: empty in the capture
    assert eth0.phys_switch_id is None


def test_netdev_nested_under_virtio(sriov: HostScan) -> None:
    (eth1,) = fn(sriov, "0000:42:00.0").netdevs
    assert eth1.name == "eth1"
    assert eth1.mac == "52:54:00:00:40:01"
    assert eth1.speed_mbps is None  # virtio reports -1
    assert [f.netdev_names for f in sriov if f.netdevs] == [("eth0",), ("eth1",)]


@pytest.mark.parametrize(
    ("address", "kind", "name", "class_hex"),
    [
        (PF0, DeviceKind.NVME, "Non-Volatile memory controller (NVMe)", "010802"),
        ("0000:22:00.0", DeviceKind.NETWORK, "Ethernet controller", "020000"),
        ("0000:42:00.0", DeviceKind.NETWORK, "Ethernet controller", "020000"),
        ("0000:00:1f.2", DeviceKind.STORAGE, "SATA controller", "010601"),
        ("0000:20:00.0", DeviceKind.BRIDGE, "PCI bridge", "060400"),
    ],
)
def test_class_decoded(
    sriov: HostScan, address: str, kind: DeviceKind, name: str, class_hex: str
) -> None:
    pci_class = fn(sriov, address).pci_class
    assert pci_class is not None
    assert (pci_class.kind, pci_class.name, pci_class.hex) == (kind, name, class_hex)


def test_ids_revision_subsystem_and_link(sriov: HostScan) -> None:
    pf = fn(sriov, PF1)
    assert (pf.vendor_id, pf.device_id) == ("1b36", "0010")
    assert (pf.subsystem_vendor_id, pf.subsystem_device_id) == ("1af4", "1100")
    assert pf.revision == 2
    assert pf.link_speed == "2.5 GT/s PCIe"
    assert pf.link_width == 1


def test_topology_two_numa_cells(sriov: HostScan) -> None:
    cells = sriov.numa_cells
    assert [(c.id, c.cpus) for c in cells] == [(0, frozenset({0})), (1, frozenset({1}))]
    assert all(400 < c.memory_mb <= 512 for c in cells)
    # the capture cut sys/devices/system/cpu/cpuN: sockets are unknown, not guessed
    assert all(c.socket is None for c in cells)


def test_novfs_capture_pfs_have_no_vfs(novfs: HostScan) -> None:
    for pf in (PF0, PF1):
        function = fn(novfs, pf)
        assert function.role is DeviceType.PF  # still a PF: sriov_totalvfs > 0
        assert function.sriov is not None
        assert function.sriov.numvfs == 0
        assert function.sriov.vfs == ()
    assert fn(novfs, PF0).sriov.totalvfs == 4  # type: ignore[union-attr]
    assert fn(novfs, PF1).sriov.totalvfs == 8  # type: ignore[union-attr]
    assert [f for f in novfs if f.role is DeviceType.VF] == []
    assert novfs.get("0000:41:01.0") is None


def test_to_devices(sriov: HostScan) -> None:
    devices = {str(d.address): d for d in sriov.to_devices()}
    assert len(devices) == 26
    vf = devices["0000:41:01.0"]
    assert vf.dev_type is DeviceType.VF
    assert str(vf.parent) == PF1
    assert (vf.vf_index, vf.numa_node, vf.class_code) == (7, 1, "010802")
    assert devices[PF0].dev_type is DeviceType.PF
    assert devices["0000:42:00.0"].netdevs == ("eth1",)
    assert devices["0000:42:00.0"].driver == "virtio-pci"
    assert devices["0000:00:1f.3"].dev_type is DeviceType.PCI
    assert devices["0000:00:1f.3"].numa_node is None


def test_sys_directory_itself_is_accepted_as_root(sriov_capture: Path) -> None:
    reader = SysfsReader.for_directory(sriov_capture / "sys")
    assert reader.root == sriov_capture
    assert len(scan(reader, pci_ids=False)) == 26
