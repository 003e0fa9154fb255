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

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple, TypeVar

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
    PortIdentity,
    netdev_dirs_by_function,
    read_netdev,
    read_port_identity,
)
from pcifleet.host.pciclass import PciClass
from pcifleet.host.pciids import PciIds, system_pci_ids
from pcifleet.host.sysfs import DirIdentity, SysfsReader
from pcifleet.host.topology import parse_cpulist, read_topology

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SriovStatic:
    """The parts of a PF's SR-IOV capability fixed in hardware."""

    totalvfs: int
    vf_device_id: str | None
    offset: int | None
    stride: int | None


@dataclass(frozen=True, slots=True)
class StaticFacts:
    """What does not change while a function's sysfs directory lives."""

    address: PciAddress
    #: the device's own directory under ``sys/devices`` (no link to follow on each read)
    directory: str
    vendor_id: str
    device_id: str
    subsystem_vendor_id: str | None
    subsystem_device_id: str | None
    revision: int | None
    pci_class: PciClass | None
    numa_node: int | None
    local_cpus: frozenset[int]
    iommu_group: int | None
    link_speed: str | None
    link_width: int | None
    physfn: PciAddress | None
    vendor_name: str | None
    device_name: str | None
    sriov: SriovStatic | None


class _Read(NamedTuple):
    """One function as read in this pass, before VFs are tied to their PF's index."""

    static: StaticFacts
    driver: str | None
    driver_override: str | None
    sriov: SriovCapability | None
    netdevs: tuple[NetDev, ...]


#: what one record is built from: the function as read, its VF index, its nested netdevs
_Inputs = tuple[_Read, int | None, tuple[NetDev, ...]]


class FactCache:
    """Static facts per function name, valid while the directory's identity is unchanged.

    Netdev port identities (``phys_port_name``, ``phys_switch_id``) are kept per function,
    driver and interface name: a rebind to another driver re-creates the netdev, so the driver
    is part of the key, and a new function directory drops them all.
    """

    __slots__ = ("_built", "_entries", "_ports", "cpu_sockets")

    def __init__(self) -> None:
        self._entries: dict[str, tuple[DirIdentity, StaticFacts]] = {}
        self._ports: dict[str, dict[tuple[str | None, str], PortIdentity]] = {}
        #: the last record built per function, with what it was built from: an unchanged
        #: function keeps its record, so a diff of two rescans is mostly identity checks
        self._built: dict[str, tuple[_Inputs, PciFunction]] = {}
        #: CPU -> socket; packages do not change while the host runs
        self.cpu_sockets: dict[int, int] | None = None

    def current(self, name: str, reader: SysfsReader) -> StaticFacts | None:
        """The cached facts of ``name`` if its directory is still the one they were read
        from (same inode and ctime: a re-created or moved device misses)."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        identity, facts = entry
        return facts if reader.identity(facts.directory) == identity else None

    def put(self, name: str, identity: DirIdentity, facts: StaticFacts) -> None:
        self._entries[name] = (identity, facts)
        self._ports[name] = {}

    def ports(self, name: str) -> dict[tuple[str | None, str], PortIdentity] | None:
        """The function's port identity memo (None when the function is not cached)."""
        return self._ports.get(name)

    def built(self, name: str, inputs: _Inputs) -> PciFunction | None:
        entry = self._built.get(name)
        return entry[1] if entry is not None and entry[0] == inputs else None

    def remember(self, name: str, inputs: _Inputs, function: PciFunction) -> None:
        self._built[name] = (inputs, function)

    def keep_only(self, names: set[str]) -> None:
        for name in set(self._entries) - names:
            del self._entries[name]
            self._ports.pop(name, None)
            self._built.pop(name, None)

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
        names = self.list_functions()
        read = {name: r for name in names if (r := self.function(name)) is not None}
        if self.cache is not None:
            self.cache.keep_only(set(names))
        nested = self.nested_netdevs(read)
        topology = read_topology(
            self.reader, None if self.cache is None else self.cache.cpu_sockets
        )
        if self.cache is not None:
            self.cache.cpu_sockets = dict(topology.cpu_sockets)
        self.warnings.extend(ScanWarning("host", text) for text in topology.warnings)
        return HostScan(
            functions=_assemble(read, nested, self.cache),
            topology=replace(topology, warnings=()),
            warnings=tuple(self.warnings),
        )

    def list_functions(self) -> list[str]:
        try:
            names = self.reader.list_dir(self.bus)
        except SysfsError as exc:
            self.warn("host", str(exc))
            names = None
        if names is None:
            self.warn("host", f"{self.reader.relative(self.bus)} is missing: no PCI functions")
            return []
        return names

    def nested_netdevs(self, read: dict[str, _Read]) -> dict[str, tuple[NetDev, ...]]:
        """Netdevs below a bus device of the function (``virtio0/net/eth1``), from
        ``class/net``; only the names not already found under ``<function>/net`` are looked up."""
        known = {netdev.name for r in read.values() for netdev in r.netdevs}
        found = netdev_dirs_by_function(self.reader, known)
        return {
            name: tuple(read_netdev(self.reader, path, ifname) for ifname, path in entries)
            for name, entries in found.items()
            if name in read
        }

    # ------------------------------------------------------------------ one function

    def function(self, name: str) -> _Read | None:
        facts = self.cache.current(name, self.reader) if self.cache is not None else None
        if facts is None:
            address = self.address(name)
            if address is None:
                return None
            entry = f"{self.bus}/{name}"
            identity = self.reader.identity(entry)
            if identity is None:
                self.warn(name, "vanished before it could be read; skipped")
                return None
            directory = self.reader.link_target(entry) or entry
            facts = self.static(name, address, directory)
            if facts is None:
                return None
            if self.cache is not None:
                self.cache.put(name, identity, facts)
        return self.volatile(name, facts)

    def address(self, name: str) -> PciAddress | None:
        try:
            return _parse_address(name)
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
        vendor_id, device_id = f"{vendor:04x}", f"{device:04x}"
        names = self.pci_ids
        return StaticFacts(
            address=address,
            directory=directory,
            vendor_id=vendor_id,
            device_id=device_id,
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
            vendor_name=None if names is None else names.vendor(vendor_id),
            device_name=None if names is None else names.device(vendor_id, device_id),
            sriov=self.sriov_static(name, directory),
        )

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
            return _cpulist(text)
        except SysfsError as exc:
            self.warn(name, str(exc))
            return frozenset()

    def physfn(self, name: str, directory: str) -> PciAddress | None:
        target = self.reader.link_name(f"{directory}/physfn")
        if target is None:
            return None
        try:
            return _parse_address(target)
        except InvalidAddress:
            self.warn(name, f"physfn points to {target!r}, not a PCI address")
            return None

    def sriov_static(self, name: str, directory: str) -> SriovStatic | None:
        total = self.soft(name, self.reader.read_int, f"{directory}/sriov_totalvfs")
        if total is None or not is_physical_function(total):
            return None
        return SriovStatic(
            totalvfs=total,
            vf_device_id=self.hex4(name, f"{directory}/sriov_vf_device"),
            offset=self.soft(name, self.reader.read_int, f"{directory}/sriov_offset"),
            stride=self.soft(name, self.reader.read_int, f"{directory}/sriov_stride"),
        )

    # ------------------------------------------------------------------ volatile facts

    def volatile(self, name: str, facts: StaticFacts) -> _Read:
        reader, directory = self.reader, facts.directory
        override = reader.try_text(f"{directory}/driver_override")
        driver = reader.link_name(f"{directory}/driver")
        return _Read(
            static=facts,
            driver=driver,
            driver_override=None if override in (None, "(null)") else override,
            sriov=None if facts.sriov is None else self.sriov(name, directory, facts.sriov),
            netdevs=self.netdevs(name, directory, driver),
        )

    def netdevs(self, name: str, directory: str, driver: str | None) -> tuple[NetDev, ...]:
        """The netdevs under ``<function>/net``. Only a bound driver creates netdevs (and
        unbinding removes them), so an unbound function is not even listed."""
        if driver is None:
            return ()
        reader = self.reader
        ifnames = reader.list_dir(f"{directory}/net")
        if not ifnames:
            return ()
        memo = self.cache.ports(name) if self.cache is not None else None
        netdevs = []
        for ifname in ifnames:
            path = f"{directory}/net/{ifname}"
            port = None
            if memo is not None:
                port = memo.get((driver, ifname))
                if port is None:
                    port = memo[(driver, ifname)] = read_port_identity(reader, path)
            netdevs.append(read_netdev(reader, path, ifname, port))
        return tuple(netdevs)

    def sriov(self, name: str, directory: str, static: SriovStatic) -> SriovCapability:
        numvfs = self.soft(name, self.reader.read_int, f"{directory}/sriov_numvfs") or 0
        vfs = []
        for index in range(numvfs):
            vf = _parse_or_none(self.reader.link_name(f"{directory}/virtfn{index}"))
            if vf is not None:
                vfs.append((index, vf))
        if len(vfs) != numvfs:
            self.warn(
                name,
                f"sriov_numvfs is {numvfs} but {len(vfs)} virtfn links resolve "
                "(VFs still being created or removed?)",
            )
        return SriovCapability(
            static.totalvfs, numvfs, static.vf_device_id, static.offset, static.stride, tuple(vfs)
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


def _assemble(
    read: dict[str, _Read], nested: dict[str, tuple[NetDev, ...]], cache: FactCache | None
) -> tuple[PciFunction, ...]:
    """The final records, ordered by address. Each VF gets its index N from its PF's
    ``virtfnN`` link (the VF side has no index); nested netdevs join the direct ones."""
    vf_index: dict[PciAddress, tuple[PciAddress, int]] = {}
    for r in read.values():
        if r.sriov is not None:
            for number, vf in r.sriov.vfs:
                vf_index[vf] = (r.static.address, number)
    ordered = sorted(read.items(), key=lambda item: _order(item[1].static.address))
    functions = []
    for name, r in ordered:
        entry = vf_index.get(r.static.address)
        physfn = r.static.physfn
        index = (
            entry[1] if entry is not None and physfn is not None and entry[0] == physfn else None
        )
        inputs: _Inputs = (r, index, nested.get(name, ()))
        function = cache.built(name, inputs) if cache is not None else None
        if function is None:
            function = _function(*inputs)
            if cache is not None:
                cache.remember(name, inputs, function)
        functions.append(function)
    return tuple(functions)


def _order(address: PciAddress) -> tuple[int, int]:
    return (address.domain, address.routing_id)


def _function(r: _Read, index: int | None, nested: tuple[NetDev, ...]) -> PciFunction:
    s = r.static
    return PciFunction(
        address=s.address,
        vendor_id=s.vendor_id,
        device_id=s.device_id,
        subsystem_vendor_id=s.subsystem_vendor_id,
        subsystem_device_id=s.subsystem_device_id,
        revision=s.revision,
        pci_class=s.pci_class,
        driver=r.driver,
        driver_override=r.driver_override,
        numa_node=s.numa_node,
        local_cpus=s.local_cpus,
        iommu_group=s.iommu_group,
        link_speed=s.link_speed,
        link_width=s.link_width,
        sriov=r.sriov,
        physfn=s.physfn,
        vf_index=index,
        netdevs=r.netdevs + nested if nested else r.netdevs,
        vendor_name=s.vendor_name,
        device_name=s.device_name,
    )


@functools.lru_cache(maxsize=16384)
def _parse_address(text: str) -> PciAddress:
    """Addresses repeat across scans (every rescan re-reads the same names and links)."""
    return PciAddress.parse(text)


@functools.lru_cache(maxsize=1024)
def _cpulist(text: str) -> frozenset[int]:
    """Most functions of a host share a handful of ``local_cpulist`` values."""
    return parse_cpulist(text, field_name="local_cpulist")


def _parse_or_none(text: str | None) -> PciAddress | None:
    if text is None:
        return None
    try:
        return _parse_address(text)
    except InvalidAddress:
        return None


def _group_number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _positive(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    return int(text) or None
