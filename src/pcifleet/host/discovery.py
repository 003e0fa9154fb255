"""Discovery: read every PCI function of a host from sysfs into a :class:`HostScan`.

For each entry of ``<root>/sys/bus/pci/devices`` the scan reads what identifies the function
(ids, class, revision, NUMA node, local CPUs, IOMMU group, link, SR-IOV capability, ``physfn``)
and what changes while the host runs (driver, ``driver_override``, ``sriov_numvfs`` and the
``virtfnN`` links, netdevs). The first group never changes while the device's directory lives,
so a :class:`FactCache` keyed by the directory's identity lets a rescan read only the second.

Faults never stop a scan. A function whose directory vanished between the listing and the
read, whose ids cannot be read, or whose name is not a 16-bit-domain PCI address (VMD puts
devices in domain ``10000``) is skipped; an optional attribute that is unreadable or malformed
is left empty. Both leave a :class:`ScanWarning` in the result.

VFs are found by following links (``virtfnN`` on the PF, ``physfn`` on the VF), never by address
arithmetic, so ARI numbering (the 9th function of a PF is the next slot) comes for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import is_physical_function
from pcifleet.domain.errors import InvalidAddress, SysfsError
from pcifleet.host.model import (
    HostScan,
    PciFunction,
    ScanWarning,
    SriovCapability,
)
from pcifleet.host.netdev import (
    NetDev,
    local_netdev_dirs,
    netdev_dirs_by_function,
    read_netdev,
)
from pcifleet.host.pciclass import PciClass
from pcifleet.host.pciids import PciIds, system_pci_ids
from pcifleet.host.sysfs import DirIdentity, SysfsReader
from pcifleet.host.topology import parse_cpulist, read_topology

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StaticFacts:
    """What does not change while a function's sysfs directory lives."""

    function: PciFunction
    #: (totalvfs, vf device id, offset, stride) on PFs
    sriov: tuple[int, str | None, int | None, int | None] | None


class FactCache:
    """Static facts per function name, valid while the directory's identity is unchanged."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[str, tuple[DirIdentity, StaticFacts]] = {}

    def get(self, name: str, identity: DirIdentity) -> StaticFacts | None:
        entry = self._entries.get(name)
        return entry[1] if entry is not None and entry[0] == identity else None

    def put(self, name: str, identity: DirIdentity, facts: StaticFacts) -> None:
        self._entries[name] = (identity, facts)

    def keep_only(self, names: set[str]) -> None:
        for name in set(self._entries) - names:
            del self._entries[name]

    def __len__(self) -> int:
        return len(self._entries)


class _Scan:
    """One pass over the tree; collects warnings as it goes."""

    def __init__(self, reader: SysfsReader, pci_ids: PciIds | None, cache: FactCache | None):
        self.reader = reader
        self.pci_ids = pci_ids
        self.cache = cache
        self.warnings: list[ScanWarning] = []
        self.bus = reader.path("sys", "bus", "pci", "devices")
        self.class_net: dict[str, list[tuple[str, str]]] = {}

    def warn(self, subject: str, message: str) -> None:
        self.warnings.append(ScanWarning(subject, message))

    def soft(self, subject: str, read: Callable[[str], T | None], path: str) -> T | None:
        """An optional attribute: a read error is a warning and an empty value."""
        try:
            return read(path)
        except SysfsError as exc:
            self.warn(subject, str(exc))
            return None

    def run(self) -> HostScan:
        try:
            names = self.reader.list_dir(self.bus)
        except SysfsError as exc:
            self.warn("host", str(exc))
            names = None
        if names is None:
            self.warn("host", f"{self.reader.relative(self.bus)} is missing: no PCI functions")
            names = []
        self.class_net = netdev_dirs_by_function(self.reader)
        functions = [f for f in map(self.function, names) if f is not None]
        if self.cache is not None:
            self.cache.keep_only(set(names))
        topology = read_topology(self.reader)
        self.warnings.extend(ScanWarning("host", text) for text in topology.warnings)
        return HostScan(
            functions=_link_vfs(sorted(functions, key=lambda f: f.address)),
            topology=replace(topology, warnings=()),
            warnings=tuple(self.warnings),
        )

    # ------------------------------------------------------------------ one function

    def function(self, name: str) -> PciFunction | None:
        address = self.address(name)
        if address is None:
            return None
        directory = f"{self.bus}/{name}"
        identity = self.reader.identity(directory)
        if identity is None:
            self.warn(name, "vanished before it could be read; skipped")
            return None
        facts = self.cache.get(name, identity) if self.cache is not None else None
        if facts is None:
            facts = self.static(name, address, directory)
            if facts is None:
                return None
            if self.cache is not None:
                self.cache.put(name, identity, facts)
        return self.volatile(name, directory, facts)

    def address(self, name: str) -> PciAddress | None:
        try:
            return PciAddress.parse(name)
        except InvalidAddress as exc:
            domain = name.split(":", 1)[0]
            if name.count(":") == 2 and len(domain) > 4:
                self.warn(name, f"PCI domain {domain} is wider than 16 bits (VMD?); skipped")
            else:
                self.warn(name, f"not a PCI address ({exc}); skipped")
            return None

    def static(self, name: str, address: PciAddress, directory: str) -> StaticFacts | None:
        reader = self.reader
        try:
            vendor = reader.read_hex(f"{directory}/vendor")
            device = reader.read_hex(f"{directory}/device")
        except SysfsError as exc:
            self.warn(name, f"{exc}; skipped")
            return None
        if vendor is None or device is None:
            gone = reader.identity(directory) is None
            self.warn(name, "vanished while being read; skipped" if gone else "no vendor/device")
            return None
        function = PciFunction(
            address=address,
            vendor_id=f"{vendor:04x}",
            device_id=f"{device:04x}",
            subsystem_vendor_id=self.hex4(name, f"{directory}/subsystem_vendor"),
            subsystem_device_id=self.hex4(name, f"{directory}/subsystem_device"),
            revision=self.soft(name, reader.read_hex, f"{directory}/revision"),
            pci_class=self.pci_class(name, directory),
            numa_node=self.numa_node(name, directory),
            local_cpus=self.local_cpus(name, directory),
            iommu_group=_group_number(reader.link_name(f"{directory}/iommu_group")),
            link_speed=reader.try_text(f"{directory}/current_link_speed"),
            link_width=_positive(reader.try_text(f"{directory}/current_link_width")),
            physfn=self.physfn(name, directory),
        )
        if self.pci_ids is not None:
            function = replace(
                function,
                vendor_name=self.pci_ids.vendor(function.vendor_id),
                device_name=self.pci_ids.device(function.vendor_id, function.device_id),
            )
        return StaticFacts(function, self.sriov_static(name, directory))

    def hex4(self, name: str, path: str) -> str | None:
        value = self.soft(name, self.reader.read_hex, path)
        return None if value is None else f"{value:04x}"

    def pci_class(self, name: str, directory: str) -> PciClass | None:
        text = self.soft(name, self.reader.read_text, f"{directory}/class")
        if text is None:
            return None
        try:
            return PciClass.parse(text)
        except SysfsError as exc:
            self.warn(name, str(exc))
            return None

    def numa_node(self, name: str, directory: str) -> int | None:
        node = self.soft(name, self.reader.read_int, f"{directory}/numa_node")
        return node if node is not None and node >= 0 else None

    def local_cpus(self, name: str, directory: str) -> frozenset[int]:
        text = self.soft(name, self.reader.read_text, f"{directory}/local_cpulist")
        if text is None:
            return frozenset()
        try:
            return parse_cpulist(text, field_name="local_cpulist")
        except SysfsError as exc:
            self.warn(name, str(exc))
            return frozenset()

    def physfn(self, name: str, directory: str) -> PciAddress | None:
        target = self.reader.link_name(f"{directory}/physfn")
        if target is None:
            return None
        try:
            return PciAddress.parse(target)
        except InvalidAddress:
            self.warn(name, f"physfn points to {target!r}, not a PCI address")
            return None

    def sriov_static(
        self, name: str, directory: str
    ) -> tuple[int, str | None, int | None, int | None] | None:
        total = self.soft(name, self.reader.read_int, f"{directory}/sriov_totalvfs")
        if not is_physical_function(total):
            return None
        assert total is not None
        vf_device = self.hex4(name, f"{directory}/sriov_vf_device")
        offset = self.soft(name, self.reader.read_int, f"{directory}/sriov_offset")
        stride = self.soft(name, self.reader.read_int, f"{directory}/sriov_stride")
        return (total, vf_device, offset, stride)

    # ------------------------------------------------------------------ volatile facts

    def volatile(self, name: str, directory: str, facts: StaticFacts) -> PciFunction:
        reader = self.reader
        override = reader.try_text(f"{directory}/driver_override")
        return replace(
            facts.function,
            driver=reader.link_name(f"{directory}/driver"),
            driver_override=None if override in (None, "(null)") else override,
            sriov=self.sriov(name, directory, facts.sriov),
            netdevs=self.netdevs(name, directory),
        )

    def sriov(
        self,
        name: str,
        directory: str,
        static: tuple[int, str | None, int | None, int | None] | None,
    ) -> SriovCapability | None:
        if static is None:
            return None
        total, vf_device, offset, stride = static
        numvfs = self.soft(name, self.reader.read_int, f"{directory}/sriov_numvfs") or 0
        vfs = []
        for index in range(numvfs):
            target = self.reader.link_name(f"{directory}/virtfn{index}")
            vf = _parse_or_none(target)
            if vf is not None:
                vfs.append((index, vf))
        if len(vfs) != numvfs:
            self.warn(
                name,
                f"sriov_numvfs is {numvfs} but {len(vfs)} virtfn links resolve "
                "(VFs still being created or removed?)",
            )
        return SriovCapability(total, numvfs, vf_device, offset, stride, tuple(vfs))

    def netdevs(self, name: str, directory: str) -> tuple[NetDev, ...]:
        found = dict(local_netdev_dirs(self.reader, directory))
        for ifname, netdev_dir in self.class_net.get(name, ()):
            found.setdefault(ifname, netdev_dir)
        return tuple(
            read_netdev(self.reader, netdev_dir, ifname)
            for ifname, netdev_dir in sorted(found.items())
        )


def scan(
    reader: SysfsReader,
    *,
    pci_ids: PciIds | bool | None = True,
    cache: FactCache | None = None,
) -> HostScan:
    """Scan ``reader``'s tree. ``pci_ids=True`` names devices from the system's pci.ids (when
    installed), ``False``/``None`` skips names, a :class:`PciIds` uses that database.
    ``cache`` (see :mod:`pcifleet.host.rescan`) keeps static facts between scans."""
    names: PciIds | None
    if pci_ids is True:
        names = system_pci_ids()
    elif pci_ids is False:
        names = None
    else:
        names = pci_ids
    return _Scan(reader, names, cache).run()


def _link_vfs(functions: list[PciFunction]) -> tuple[PciFunction, ...]:
    """Give each VF its index N from its PF's ``virtfnN`` link (the VF side has no index)."""
    index: dict[PciAddress, tuple[PciAddress, int]] = {}
    for function in functions:
        if function.sriov is not None:
            for vf_index, vf in function.sriov.vfs:
                index[vf] = (function.address, vf_index)
    linked = []
    for function in functions:
        entry = index.get(function.address)
        if function.physfn is not None and entry is not None and entry[0] == function.physfn:
            linked.append(replace(function, vf_index=entry[1]))
        else:
            linked.append(function)
    return tuple(linked)


def _parse_or_none(text: str | None) -> PciAddress | None:
    if text is None:
        return None
    try:
        return PciAddress.parse(text)
    except InvalidAddress:
        return None


def _group_number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _positive(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    return int(text) or None
