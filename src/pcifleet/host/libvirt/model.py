"""Typed inputs of the libvirt renderer: what a guest looks like, without the controller.

The renderer only knows these frozen dataclasses, so it can be driven by the agent, the CLI or
a test without importing the controller. Each class checks, when built, the rules libvirt would
otherwise reject at ``defineXML`` time (found with libvirt 9.0's parser): a ``/`` in the domain
name, a VLAN tag above 4095, a multicast MAC, a PCI function assigned twice, more vCPUs in the
NUMA cells than in the guest, a ``nodeset`` naming a guest node that does not exist. Failing
here gives an error that names the field and the rule instead of a libvirt message at plug
time.

Sizes follow the rest of pcifleet (memory in MiB, huge page sizes in KiB); the renderer writes
KiB, the unit libvirt prints back.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from uuid import UUID

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidGuestSpec
from pcifleet.domain.placement import CellPlacement, Placement
from pcifleet.domain.vnic import PlugKind, VnicType, vnic_info


class VirtType(enum.StrEnum):
    """``<domain type=...>``: hardware-accelerated KVM or plain QEMU emulation."""

    KVM = "kvm"
    QEMU = "qemu"


class CpuMode(enum.StrEnum):
    """``<cpu mode=...>``; host-model keeps the guest migratable between similar hosts."""

    HOST_MODEL = "host-model"
    HOST_PASSTHROUGH = "host-passthrough"


class DiskFormat(enum.StrEnum):
    RAW = "raw"
    QCOW2 = "qcow2"


class VhostUserMode(enum.StrEnum):
    """Who owns the vhost-user socket: ``server`` means QEMU creates it, the relay connects."""

    SERVER = "server"
    CLIENT = "client"


def invalid(field_name: str, rule: str, text: str) -> InvalidGuestSpec:
    """The renderer's one error: ``guest <field>: <text>`` with the field and rule attached."""
    return InvalidGuestSpec(f"guest {field_name}: {text}", field=field_name, rule=rule)


_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
#: Linux interface names as libvirt's schema admits them (``deviceName``), at most 15 bytes
_IFNAME = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
_VDPA_PATH = re.compile(r"/dev/vhost-vdpa-[0-9]+")
_DISK_TARGET = re.compile(r"(vd|sd|hd)[a-z]{1,3}")
#: libvirt's ``virtualPortProfileID``: a free string of at most 39 characters
_PROFILE_MAX = 39
#: libvirt (9.0) formats ``profileid`` without escaping: these would make its XMLDesc ill-formed
_XML_SPECIAL: Final = frozenset("<>&'\"")
_VLAN_MAX = 4095


def normalize_mac(value: str) -> str:
    """Lower-case ``aa:bb:cc:dd:ee:ff``; multicast addresses are refused as libvirt does."""
    mac = value.strip().lower()
    if not _MAC.fullmatch(mac):
        raise invalid("mac", "format", f"{value!r} is not a MAC address like fa:16:3e:00:00:01")
    if int(mac[:2], 16) & 1:
        raise invalid("mac", "unicast", f"{value!r} is a multicast address; a NIC needs unicast")
    return mac


def _check_ifname(field_name: str, value: str) -> None:
    if not _IFNAME.fullmatch(value):
        raise invalid(
            field_name,
            "ifname",
            f"{value!r} is not a network interface name (1-15 of A-Z a-z 0-9 _ . : -)",
        )


def _check_text(field_name: str, value: str) -> None:
    """Free text that still has to be representable in XML (no NUL or control characters)."""
    if not value or any(ord(ch) < 32 for ch in value):
        raise invalid(field_name, "text", f"{value!r} is empty or holds control characters")


@dataclass(frozen=True, slots=True)
class GuestDevice:
    """A whole PCI function given to the guest (flavor device): ``<hostdev>``."""

    address: PciAddress
    #: libvirt detaches the function from its host driver and binds vfio-pci itself; False
    #: needs the function pre-bound to vfio-pci (Nova's ``managed`` tag)
    managed: bool = True

    @classmethod
    def from_tags(cls, address: PciAddress, tags: Mapping[str, str]) -> GuestDevice:
        """``managed`` from the device's tags; absent means yes, as in Nova."""
        return cls(address, managed=tags.get("managed", "true").strip().lower() == "true")


#: which port fields each plug kind cannot do without
_REQUIRED: Final = MappingProxyType(
    {
        PlugKind.HOSTDEV_INTERFACE: ("address",),
        PlugKind.HOSTDEV: ("address",),
        PlugKind.MACVTAP: ("vf_netdev",),
        PlugKind.VDPA: ("vdpa_path",),
        PlugKind.VIRTIO: (),
        PlugKind.VHOSTUSER: ("vhostuser_socket",),
    }
)
#: the plug kinds whose XML carries a VLAN tag and an 802.1Qbh port profile
_CARRIES_VLAN: Final = frozenset({PlugKind.HOSTDEV_INTERFACE, PlugKind.MACVTAP})


@dataclass(frozen=True, slots=True)
class GuestPort:
    """A network port of the guest; its vnic type picks the XML shape (the vnic table's plug).

    Only the fields of the port's kind matter: ``address`` for ``direct``/``remote-managed``
    (the VF) and ``direct-physical`` (the PF), ``vf_netdev`` for ``macvtap``, ``vdpa_path`` for
    ``vdpa``, ``bridge`` (and the OVS port id) for ``normal``, ``vhostuser_socket`` for
    ``virtio-forwarder``. A whole-PF ``direct-physical`` port renders as a plain ``<hostdev>``,
    which has no MAC element: the guest sees the PF's own MAC.
    """

    vnic_type: VnicType
    mac: str | None = None
    vlan: int | None = None
    #: 802.1Qbh port profile (Cisco VM-FEX style); only for direct VFs and macvtap
    profile_id: str | None = None
    address: PciAddress | None = None
    vf_netdev: str | None = None
    vdpa_path: str | None = None
    bridge: str = "br-int"
    #: Neutron port id written as the OVS ``interfaceid`` of a ``normal`` port on an OVS bridge
    ovs_interface_id: UUID | None = None
    vhostuser_socket: str | None = None
    vhostuser_mode: VhostUserMode = VhostUserMode.SERVER
    managed: bool = True

    def __post_init__(self) -> None:
        plug = self.plug
        if self.mac is not None:
            object.__setattr__(self, "mac", normalize_mac(self.mac))
        missing = [name for name in _REQUIRED[plug] if getattr(self, name) is None]
        if missing:
            raise invalid(
                missing[0], "required", f"a {self.vnic_type} port needs {' and '.join(missing)}"
            )
        self._check_vlan_and_profile(plug)
        self._check_names()

    @property
    def plug(self) -> PlugKind:
        """How the port is presented to the guest (from the vnic table)."""
        plug = vnic_info(self.vnic_type).plug
        if plug is PlugKind.NONE:
            raise invalid(
                "vnic_type", "plug-kind", f"{self.vnic_type} ports are not plugged through libvirt"
            )
        return plug

    def _check_vlan_and_profile(self, plug: PlugKind) -> None:
        for name in ("vlan", "profile_id"):
            if getattr(self, name) is not None and plug not in _CARRIES_VLAN:
                raise invalid(name, "plug-kind", f"a {self.vnic_type} port cannot carry {name}")
        if self.vlan is not None and not 0 <= self.vlan <= _VLAN_MAX:
            raise invalid("vlan", "range", f"VLAN tag {self.vlan} is outside 0-{_VLAN_MAX}")
        if self.profile_id is not None:
            _check_text("profile_id", self.profile_id)
            if len(self.profile_id) > _PROFILE_MAX:
                raise invalid("profile_id", "length", f"longer than {_PROFILE_MAX} characters")
            if set(self.profile_id) & _XML_SPECIAL:
                raise invalid(
                    "profile_id",
                    "xml-special",
                    "must not contain < > & ' \" (libvirt 9 prints profileid unescaped)",
                )

    def _check_names(self) -> None:
        _check_ifname("bridge", self.bridge)
        if self.vf_netdev is not None:
            _check_ifname("vf_netdev", self.vf_netdev)
        if self.vdpa_path is not None and not _VDPA_PATH.fullmatch(self.vdpa_path):
            raise invalid("vdpa_path", "format", f"{self.vdpa_path!r} is not /dev/vhost-vdpa-N")
        if self.vhostuser_socket is not None:
            _check_text("vhostuser_socket", self.vhostuser_socket)
            if not self.vhostuser_socket.startswith("/"):
                raise invalid("vhostuser_socket", "absolute", "the socket path must be absolute")

    @property
    def pci_address(self) -> PciAddress | None:
        """The host function the port passes through (None for the software-backed kinds)."""
        passthrough = (PlugKind.HOSTDEV_INTERFACE, PlugKind.HOSTDEV)
        return self.address if self.plug in passthrough else None


def _check_hugepage_size(size_kib: int | None, memory_mib: int, where: str) -> None:
    if size_kib is None:
        return
    if size_kib < 4 or size_kib & (size_kib - 1):
        raise invalid("hugepage_size_kib", "power-of-two", f"{size_kib} KiB is not a page size")
    if (memory_mib * 1024) % size_kib:
        raise invalid(
            "memory_mib",
            "hugepage-multiple",
            f"{where} memory {memory_mib} MiB is not a whole number of {size_kib} KiB pages",
        )


@dataclass(frozen=True, slots=True)
class GuestCell:
    """One guest NUMA node, bound to one host cell (the scheduler's choice)."""

    node: int
    host_cell: int
    vcpus: int
    memory_mib: int
    #: host CPUs for a dedicated guest, one per vCPU (vCPUs take them in ascending order)
    pinned_cpus: frozenset[int] = frozenset()
    hugepage_size_kib: int | None = None

    def __post_init__(self) -> None:
        where = f"cell {self.node}"
        if self.node < 0 or self.host_cell < 0:
            raise invalid("cells", "non-negative", f"{where}: node ids must be >= 0")
        if self.vcpus < 1 or self.memory_mib < 1:
            raise invalid("cells", "positive", f"{where}: needs at least 1 vCPU and 1 MiB")
        if self.pinned_cpus and len(self.pinned_cpus) != self.vcpus:
            raise invalid(
                "pinned_cpus",
                "one-per-vcpu",
                f"{where}: {len(self.pinned_cpus)} pinned host CPUs for {self.vcpus} vCPUs",
            )
        if any(cpu < 0 for cpu in self.pinned_cpus):
            raise invalid("pinned_cpus", "non-negative", f"{where}: host CPU ids must be >= 0")
        _check_hugepage_size(self.hugepage_size_kib, self.memory_mib, where)

    @classmethod
    def from_placement(cls, cell: CellPlacement) -> GuestCell:
        return cls(
            node=cell.guest_node,
            host_cell=cell.host_cell,
            vcpus=cell.vcpus,
            memory_mib=cell.memory_mb,
            pinned_cpus=cell.pinned_cpus,
            hugepage_size_kib=cell.hugepage_size_kb,
        )


@dataclass(frozen=True, slots=True)
class GuestDisk:
    """The optional boot disk (an image file on the host)."""

    path: str
    format: DiskFormat = DiskFormat.QCOW2
    target: str = "vda"

    def __post_init__(self) -> None:
        _check_text("disk.path", self.path)
        if not self.path.startswith("/"):
            raise invalid("disk.path", "absolute", f"{self.path!r} is not an absolute path")
        if not _DISK_TARGET.fullmatch(self.target):
            raise invalid("disk.target", "format", f"{self.target!r} is not like vda or sdb")


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """Everything the renderer needs for one instance's domain."""

    name: str
    uuid: UUID
    vcpus: int
    memory_mib: int
    #: guest NUMA nodes in node order; empty: no guest NUMA topology (vCPUs float)
    cells: tuple[GuestCell, ...] = ()
    devices: tuple[GuestDevice, ...] = ()
    ports: tuple[GuestPort, ...] = ()
    #: huge pages of a guest without cells (with cells each cell names its own size)
    hugepage_size_kib: int | None = None
    #: an emulated Intel IOMMU, so the guest can use VFIO/DPDK on its passed-through devices
    viommu: bool = False
    disk: GuestDisk | None = None
    virt_type: VirtType = VirtType.KVM
    cpu_mode: CpuMode | None = CpuMode.HOST_MODEL
    machine: str = "q35"
    arch: str = "x86_64"
    _vcpu_starts: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_identity()
        self._check_cells()
        self._check_pinning()
        self._check_unique_functions()
        if self.viommu and "q35" not in self.machine:
            raise invalid(
                "viommu", "q35", f"the Intel vIOMMU needs a q35 machine, not {self.machine}"
            )
        starts, total = [], 0
        for cell in self.cells:
            starts.append(total)
            total += cell.vcpus
        object.__setattr__(self, "_vcpu_starts", tuple(starts))

    def _check_identity(self) -> None:
        _check_text("name", self.name)
        if "/" in self.name:
            raise invalid("name", "no-slash", f"{self.name!r} contains '/', which libvirt refuses")
        if self.vcpus < 1 or self.memory_mib < 1:
            raise invalid("vcpus", "positive", "a guest needs at least 1 vCPU and 1 MiB of memory")

    def _check_cells(self) -> None:
        if not self.cells:
            _check_hugepage_size(self.hugepage_size_kib, self.memory_mib, "guest")
            return
        if self.hugepage_size_kib is not None:
            raise invalid("hugepage_size_kib", "per-cell", "a NUMA guest names page sizes per cell")
        if [c.node for c in self.cells] != list(range(len(self.cells))):
            raise invalid("cells", "contiguous", "guest nodes must be 0..n-1 in order")
        if sum(c.vcpus for c in self.cells) != self.vcpus:
            raise invalid(
                "vcpus", "cells-sum", f"{self.vcpus} vCPUs but the cells hold another count"
            )
        if sum(c.memory_mib for c in self.cells) != self.memory_mib:
            raise invalid(
                "memory_mib", "cells-sum", "the cells' memory does not add up to the guest's"
            )

    def _check_pinning(self) -> None:
        pinned = [c for c in self.cells if c.pinned_cpus]
        if pinned and len(pinned) != len(self.cells):
            raise invalid("pinned_cpus", "all-or-none", "either every cell is pinned or none is")
        cpus = [cpu for c in pinned for cpu in c.pinned_cpus]
        if len(cpus) != len(set(cpus)):
            raise invalid("pinned_cpus", "distinct", "a host CPU is pinned to two vCPUs")

    def _check_unique_functions(self) -> None:
        seen: set[PciAddress] = set()
        addresses = [d.address for d in self.devices]
        addresses += [a for a in (p.pci_address for p in self.ports) if a is not None]
        for address in addresses:
            if address in seen:
                raise invalid("devices", "distinct", f"PCI function {address} is assigned twice")
            seen.add(address)

    @property
    def dedicated(self) -> bool:
        """True when every vCPU has its own host CPU (the dedicated CPU policy)."""
        return bool(self.cells) and all(c.pinned_cpus for c in self.cells)

    def vcpu_ids(self, cell: GuestCell) -> range:
        """The guest vCPU numbers of a cell: cells take consecutive vCPUs in node order."""
        start = self._vcpu_starts[cell.node]
        return range(start, start + cell.vcpus)

    @classmethod
    def from_placement(
        cls,
        name: str,
        instance_uuid: UUID,
        placement: Placement,
        *,
        devices: tuple[GuestDevice, ...] = (),
        ports: tuple[GuestPort, ...] = (),
        viommu: bool = False,
        disk: GuestDisk | None = None,
    ) -> DomainSpec:
        """The domain of a scheduler placement: guest cells on the host cells it chose."""
        cells = tuple(GuestCell.from_placement(c) for c in placement.cells)
        vcpus = sum(c.vcpus for c in cells) if cells else placement.floating_vcpus
        memory = sum(c.memory_mib for c in cells) if cells else placement.floating_memory_mb
        return cls(
            name=name,
            uuid=instance_uuid,
            vcpus=vcpus,
            memory_mib=memory,
            cells=cells,
            devices=devices,
            ports=ports,
            viommu=viommu,
            disk=disk,
        )
