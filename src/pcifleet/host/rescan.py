"""Continuous rescans: a cheap rescan and the difference between two scans.

Devices come and go while the agent runs (VF count changed, hot plug, a driver rebound). The
:class:`Rescanner` keeps each function's static facts (ids, class, NUMA node, IOMMU group, ...)
keyed by the identity of its sysfs directory (inode and ctime: a re-created VF is a new
directory) and re-reads only what changes in place: driver, ``driver_override``,
``sriov_numvfs`` and ``virtfnN`` links, netdevs. :func:`diff` reports what the agent must tell
the controller: functions added, removed, and the fields that changed on the others.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pcifleet.domain.address import PciAddress
from pcifleet.host.discovery import FactCache, scan
from pcifleet.host.model import HostScan, PciFunction
from pcifleet.host.netdev import NetDev
from pcifleet.host.pciids import PciIds
from pcifleet.host.sysfs import SysfsReader


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One changed fact: ``field`` is a dotted name (``driver``, ``sriov.numvfs``,
    ``netdev.eth0.operstate``)."""

    field: str
    old: object
    new: object

    def __str__(self) -> str:
        return f"{self.field}: {self.old!r} -> {self.new!r}"


@dataclass(frozen=True, slots=True)
class ScanDiff:
    added: tuple[PciAddress, ...] = ()
    removed: tuple[PciAddress, ...] = ()
    #: (address, its changed fields), ordered by address
    changed: tuple[tuple[PciAddress, tuple[FieldChange, ...]], ...] = ()
    #: changes of the host's topology (``numa.<id>.<field>``, e.g. free huge pages)
    host: tuple[FieldChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.host)

    def changes_for(self, address: PciAddress) -> tuple[FieldChange, ...]:
        return next((changes for a, changes in self.changed if a == address), ())


def diff(previous: HostScan, current: HostScan) -> ScanDiff:
    """What changed from ``previous`` to ``current``."""
    before, after = previous.by_address, current.by_address
    changed = []
    for address in sorted(before.keys() & after.keys(), key=_order):
        old, new = before[address], after[address]
        if old is not new and old != new:
            changes = _function_changes(old, new)
            if changes:
                changed.append((address, changes))
    return ScanDiff(
        added=tuple(sorted(after.keys() - before.keys(), key=_order)),
        removed=tuple(sorted(before.keys() - after.keys(), key=_order)),
        changed=tuple(changed),
        host=_topology_changes(previous, current),
    )


def _order(address: PciAddress) -> tuple[int, int]:
    return (address.domain, address.routing_id)


_COMPOSITE = frozenset({"sriov", "netdevs"})


def _function_changes(old: PciFunction, new: PciFunction) -> tuple[FieldChange, ...]:
    changes = [
        FieldChange(f.name, getattr(old, f.name), getattr(new, f.name))
        for f in fields(PciFunction)
        if f.name not in _COMPOSITE and getattr(old, f.name) != getattr(new, f.name)
    ]
    changes.extend(_sriov_changes(old, new))
    changes.extend(_netdev_changes(old.netdevs, new.netdevs))
    return tuple(changes)


def _sriov_changes(old: PciFunction, new: PciFunction) -> list[FieldChange]:
    if old.sriov == new.sriov:
        return []
    if old.sriov is None or new.sriov is None:
        return [FieldChange("sriov", old.sriov, new.sriov)]
    return [
        FieldChange(f"sriov.{f.name}", getattr(old.sriov, f.name), getattr(new.sriov, f.name))
        for f in fields(old.sriov)
        if getattr(old.sriov, f.name) != getattr(new.sriov, f.name)
    ]


def _netdev_changes(old: tuple[NetDev, ...], new: tuple[NetDev, ...]) -> list[FieldChange]:
    if old == new:
        return []
    before = {n.name: n for n in old}
    after = {n.name: n for n in new}
    changes = []
    if before.keys() != after.keys():
        changes.append(FieldChange("netdevs", tuple(before), tuple(after)))
    for name in sorted(before.keys() & after.keys()):
        changes.extend(
            FieldChange(f"netdev.{name}.{f.name}", getattr(before[name], f.name), value)
            for f in fields(NetDev)
            if (value := getattr(after[name], f.name)) != getattr(before[name], f.name)
        )
    return changes


def _topology_changes(previous: HostScan, current: HostScan) -> tuple[FieldChange, ...]:
    if previous.topology == current.topology:
        return ()
    before = {cell.id: cell for cell in previous.numa_cells}
    after = {cell.id: cell for cell in current.numa_cells}
    changes = [
        FieldChange(f"numa.{node}", before.get(node), after.get(node))
        for node in sorted(before.keys() ^ after.keys())
    ]
    for node in sorted(before.keys() & after.keys()):
        old, new = before[node], after[node]
        changes.extend(
            FieldChange(f"numa.{node}.{f.name}", getattr(old, f.name), getattr(new, f.name))
            for f in fields(old)
            if getattr(old, f.name) != getattr(new, f.name)
        )
    if previous.topology.cpu_sockets != current.topology.cpu_sockets:
        changes.append(
            FieldChange("cpu_sockets", previous.topology.cpu_sockets, current.topology.cpu_sockets)
        )
    return tuple(changes)


class Rescanner:
    """Scans one host repeatedly; the first scan is full, later ones reuse static facts."""

    def __init__(self, reader: SysfsReader, *, pci_ids: PciIds | bool | None = True) -> None:
        self.reader = reader
        self._pci_ids = pci_ids
        self._cache = FactCache()
        self.last: HostScan | None = None

    def scan(self) -> HostScan:
        self.last = scan(self.reader, pci_ids=self._pci_ids, cache=self._cache)
        return self.last

    def rescan(self, *, full: bool = False) -> tuple[HostScan, ScanDiff]:
        """A new scan and its difference from the previous one (all added the first time).

        ``full`` drops the cache first, so static facts changed in place are seen too (an
        agent does this now and then: the kernel rarely rewrites them, but a driver reload
        can, e.g. ``numa_node`` after a firmware update)."""
        previous = self.last if self.last is not None else HostScan(())
        if full:
            self._cache = FactCache()
        current = self.scan()
        return current, diff(previous, current)
