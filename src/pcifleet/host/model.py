"""What a scan of one host found: typed, frozen records, convertible to domain devices.

Discovery (:mod:`pcifleet.host.discovery`) produces a :class:`HostScan`; the rescanner
diffs two of them; the qualifier applies device specs to one; the CLI prints one. Nothing here
does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.numa import NumaCell
from pcifleet.host.netdev import NetDev
from pcifleet.host.pciclass import PciClass
from pcifleet.host.topology import HostTopology


@dataclass(frozen=True, slots=True)
class SriovCapability:
    """The SR-IOV side of a physical function (``sriov_*`` attributes and ``virtfnN`` links)."""

    totalvfs: int
    numvfs: int
    #: the VFs' device id, 4 lower-case hex digits (sysfs writes it without ``0x``)
    vf_device_id: str | None = None
    #: routing-id distance of VF 0 from the PF, and between VFs
    offset: int | None = None
    stride: int | None = None
    #: (VF index N of ``virtfnN``, VF address), ordered by index
    vfs: tuple[tuple[int, PciAddress], ...] = ()


@dataclass(frozen=True, slots=True)
class PciFunction:
    """One PCI function as sysfs shows it."""

    address: PciAddress
    vendor_id: str
    device_id: str
    subsystem_vendor_id: str | None = None
    subsystem_device_id: str | None = None
    revision: int | None = None
    pci_class: PciClass | None = None
    driver: str | None = None
    driver_override: str | None = None
    #: None when the kernel reports -1 (no NUMA affinity known)
    numa_node: int | None = None
    local_cpus: frozenset[int] = frozenset()
    iommu_group: int | None = None
    #: ``current_link_speed`` as the kernel words it (``8.0 GT/s PCIe``), and lanes
    link_speed: str | None = None
    link_width: int | None = None
    #: set on physical functions (``sriov_totalvfs`` > 0)
    sriov: SriovCapability | None = None
    #: set on virtual functions: the parent PF and this VF's index N (``virtfnN``)
    physfn: PciAddress | None = None
    vf_index: int | None = None
    netdevs: tuple[NetDev, ...] = ()
    vendor_name: str | None = None
    device_name: str | None = None

    @property
    def role(self) -> DeviceType:
        if self.sriov is not None:
            return DeviceType.PF
        if self.physfn is not None:
            return DeviceType.VF
        return DeviceType.PCI

    @property
    def netdev_names(self) -> tuple[str, ...]:
        return tuple(netdev.name for netdev in self.netdevs)

    @property
    def class_name(self) -> str | None:
        return None if self.pci_class is None else self.pci_class.name

    def to_device(self) -> Device:
        return Device(
            address=self.address,
            vendor_id=self.vendor_id,
            product_id=self.device_id,
            dev_type=self.role,
            class_code=None if self.pci_class is None else self.pci_class.hex,
            numa_node=self.numa_node,
            parent=self.physfn,
            vf_index=self.vf_index,
            driver=self.driver,
            netdevs=self.netdev_names,
        )


@dataclass(frozen=True, slots=True)
class ScanWarning:
    """Something the scan skipped or could not read; ``subject`` is what it concerns
    (a function's name as sysfs lists it, a NUMA node, ``host``)."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"


@dataclass(frozen=True, slots=True)
class HostScan:
    """Every readable PCI function of a host (ordered by address), its topology, warnings."""

    functions: tuple[PciFunction, ...]
    topology: HostTopology = field(default_factory=HostTopology)
    warnings: tuple[ScanWarning, ...] = ()
    _index: Mapping[PciAddress, PciFunction] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        index = {function.address: function for function in self.functions}
        object.__setattr__(self, "_index", MappingProxyType(index))

    def __iter__(self) -> Iterator[PciFunction]:
        return iter(self.functions)

    def __len__(self) -> int:
        return len(self.functions)

    def get(self, address: PciAddress | str) -> PciFunction | None:
        key = PciAddress.parse(address) if isinstance(address, str) else address
        return self._index.get(key)

    @property
    def by_address(self) -> Mapping[PciAddress, PciFunction]:
        return self._index

    @property
    def numa_cells(self) -> tuple[NumaCell, ...]:
        return self.topology.cells

    def physical_functions(self) -> tuple[PciFunction, ...]:
        return tuple(f for f in self.functions if f.role is DeviceType.PF)

    def vfs_of(self, pf: PciAddress) -> tuple[PciFunction, ...]:
        """The PF's VFs present in the scan, ordered by VF index."""
        function = self._index.get(pf)
        if function is None or function.sriov is None:
            return ()
        return tuple(
            self._index[address] for _, address in function.sriov.vfs if address in self._index
        )

    def to_devices(self) -> tuple[Device, ...]:
        """Domain records for every function (PF/VF/PCI, parent, VF index, driver, ...)."""
        return tuple(function.to_device() for function in self.functions)
