"""An indexed, immutable view of one host, as the fit and the scheduler see it.

:class:`HostState` holds the host's NUMA cells with their usage, its assignable devices with
their states, the pools pre-built from them and the placements of the instances on it. It is
never mutated: :func:`apply`, :func:`release` and :meth:`HostState.transition` return a new
state that shares every unchanged part (copy-on-write), and rebuild only the pools whose
devices changed, so a scheduler can keep one per host in memory and update it after a claim.

Only assignable devices belong here (devices that a device spec matched and no exclusion
removed). A VF whose PF is not assignable (e.g. an accelerator's PF) simply has no tracked
parent and couples with nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device
from pcifleet.domain.errors import AlreadyExists, NotFound
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.placement import CellPlacement, Placement
from pcifleet.domain.pool import KeySet, Pool, build_pools, refresh_pool
from pcifleet.domain.state import HELD, Family, Operation, transition

#: one state-machine operation of :meth:`HostState.transitions`: device, operation, owner
Step = tuple[PciAddress, Operation, str | None]


@dataclass(frozen=True, slots=True)
class CellUsage:
    """What the placed instances take from one NUMA cell."""

    shared_vcpus: int = 0
    pinned: frozenset[int] = frozenset()
    memory_mb: int = 0
    #: (huge page size in KiB, pages used), sorted by size
    hugepages: tuple[tuple[int, int], ...] = ()

    def pages_used(self, size_kb: int) -> int:
        for size, used in self.hugepages:
            if size == size_kb:
                return used
        return 0

    def add(self, cell: CellPlacement, sign: int = 1) -> CellUsage:
        """Usage with ``cell`` added (``sign=1``) or taken away (``sign=-1``)."""
        pinned = self.pinned | cell.pinned_cpus if sign > 0 else self.pinned - cell.pinned_cpus
        pages = dict(self.hugepages)
        memory = self.memory_mb
        if cell.hugepage_size_kb is None:
            memory += sign * cell.memory_mb
        else:
            size = cell.hugepage_size_kb
            pages[size] = pages.get(size, 0) + sign * cell.hugepages
        return CellUsage(
            self.shared_vcpus + sign * cell.shared_vcpus,
            pinned,
            memory,
            tuple(sorted((s, n) for s, n in pages.items() if n)),
        )


@dataclass(frozen=True, slots=True)
class HostIndex:
    """Structure that only changes when devices appear or vanish."""

    #: PF -> its tracked VF-like children, by address
    children: Mapping[PciAddress, tuple[PciAddress, ...]]
    #: device -> index of its pool in ``HostState.pools``
    pool_of: Mapping[PciAddress, int]
    keys: KeySet
    #: host cell id -> position in ``HostState.cells``
    cell_pos: Mapping[int, int]
    #: host cell id (= NUMA node) -> socket
    socket_of: Mapping[int, int | None]


@dataclass(frozen=True, slots=True)
class HostTotals:
    """Host-wide sums, kept up to date so the host-wide check costs a few compares."""

    unpinned_cpus: int = 0
    #: shared vCPUs of every placed guest, NUMA or floating
    shared_vcpus: int = 0
    memory_mb: int = 0
    #: memory of every placed guest not backed by huge pages, NUMA or floating
    memory_used_mb: int = 0


@dataclass(frozen=True, slots=True)
class HostState:
    name: str
    cells: tuple[NumaCell, ...]
    #: aligned with ``cells``
    usage: tuple[CellUsage, ...]
    #: a read-only view; ``copy()`` on it reuses the stored hashes (cheap copy-on-write)
    devices: MappingProxyType[PciAddress, Device]
    pools: tuple[Pool, ...]
    placements: Mapping[str, Placement]
    index: HostIndex = field(repr=False)
    cpu_allocation_ratio: float = 1.0
    ram_allocation_ratio: float = 1.0
    #: vCPUs and memory of placed guests without NUMA topology
    floating_vcpus: int = 0
    floating_memory_mb: int = 0
    totals: HostTotals = field(default=HostTotals(), repr=False)

    @classmethod
    def build(
        cls,
        name: str,
        cells: Iterable[NumaCell],
        devices: Iterable[Device],
        *,
        placements: Iterable[Placement] = (),
        cpu_allocation_ratio: float = 1.0,
        ram_allocation_ratio: float = 1.0,
    ) -> HostState:
        """Index a host. Device states must already reflect ``placements`` (as stored)."""
        cell_tuple = tuple(sorted(cells, key=lambda c: c.id))
        by_address = {d.address: d for d in devices}
        pools = build_pools(by_address.values())
        host = cls(
            name,
            cell_tuple,
            tuple(CellUsage() for _ in cell_tuple),
            MappingProxyType(by_address),
            pools,
            MappingProxyType({}),
            _index(cell_tuple, by_address, pools),
            cpu_allocation_ratio,
            ram_allocation_ratio,
        )
        totals = _totals(host.cells, host.usage, host.floating_vcpus, host.floating_memory_mb)
        host = replace(host, totals=totals)
        for placement in placements:
            host = _account(host, placement, 1)
        return host

    @property
    def free_devices(self) -> int:
        return sum(pool.count for pool in self.pools)

    def cell(self, cell_id: int) -> NumaCell:
        return self.cells[self.index.cell_pos[cell_id]]

    def usage_of(self, cell_id: int) -> CellUsage:
        return self.usage[self.index.cell_pos[cell_id]]

    def family(self, address: PciAddress) -> Family:
        """The device at ``address`` with the relatives it couples with."""
        return self._family_in(self.devices, address)

    def _family_in(self, devices: Mapping[PciAddress, Device], address: PciAddress) -> Family:
        device = devices.get(address)
        if device is None:
            raise NotFound(f"PCI device {address} is not an assignable device of host {self.name}")
        head_address = device.parent if device.is_vf_like else address
        if head_address is None or head_address not in devices:
            return Family(None, (device,))
        children = self.index.children.get(head_address, ())
        return Family(devices[head_address], tuple(map(devices.__getitem__, children)))

    def transition(self, address: PciAddress, op: Operation, owner: str | None = None) -> HostState:
        """The host after one state-machine operation on one device (and its relatives)."""
        return self.transitions(((address, op, owner),))

    def transitions(self, steps: Iterable[Step]) -> HostState:
        """The host after several operations, in order, each as :meth:`transition` would do
        it: one copy of the device map and one refresh per touched pool, whatever their
        number (a guest's devices are claimed and freed together)."""
        devices = self.devices.copy()
        changed: list[Device] = []
        rebuild = False
        for address, op, owner in steps:
            family = self._family_in(devices, address)
            after = transition(family, address, op, owner)
            for old, new in zip(family.members, after.members, strict=True):
                if new is not old:
                    devices[new.address] = new
                    changed.append(new)
            rebuild = rebuild or op in (Operation.REMOVE, Operation.RESTORE)
        return self._with_devices(devices, changed, rebuild=rebuild)

    def _with_devices(
        self, devices: dict[PciAddress, Device], changed: list[Device], *, rebuild: bool
    ) -> HostState:
        if not changed:
            return self
        if rebuild:
            pools = build_pools(devices.values())
            index = _index(self.cells, devices, pools)
            return replace(self, devices=MappingProxyType(devices), pools=pools, index=index)
        pools_list = list(self.pools)
        for i in sorted({self.index.pool_of[d.address] for d in changed}):
            pools_list[i] = refresh_pool(pools_list[i], devices)
        return replace(self, devices=MappingProxyType(devices), pools=tuple(pools_list))


def _index(
    cells: tuple[NumaCell, ...], devices: Mapping[PciAddress, Device], pools: tuple[Pool, ...]
) -> HostIndex:
    children: dict[PciAddress, list[PciAddress]] = {}
    for device in devices.values():
        parent = device.parent if device.is_vf_like else None
        if parent is not None and parent in devices and devices[parent].is_pf:
            children.setdefault(parent, []).append(device.address)
    pool_of = {address: i for i, pool in enumerate(pools) for address in pool.members}
    return HostIndex(
        MappingProxyType({pf: tuple(sorted(vfs)) for pf, vfs in children.items()}),
        MappingProxyType(pool_of),
        KeySet(tuple(pool.key for pool in pools)),
        MappingProxyType({cell.id: i for i, cell in enumerate(cells)}),
        MappingProxyType({cell.id: cell.socket for cell in cells}),
    )


def _totals(
    cells: tuple[NumaCell, ...],
    usage: tuple[CellUsage, ...],
    floating_vcpus: int,
    floating_memory_mb: int,
) -> HostTotals:
    return HostTotals(
        sum(len(cell.cpus) - len(used.pinned) for cell, used in zip(cells, usage, strict=True)),
        sum(used.shared_vcpus for used in usage) + floating_vcpus,
        sum(cell.memory_mb for cell in cells),
        sum(used.memory_mb for used in usage) + floating_memory_mb,
    )


def _account(host: HostState, placement: Placement, sign: int) -> HostState:
    """Add (sign=1) or remove (sign=-1) a placement's CPU and memory usage."""
    usage = list(host.usage)
    for cell in placement.cells:
        pos = host.index.cell_pos[cell.host_cell]
        usage[pos] = usage[pos].add(cell, sign)
    placements = dict(host.placements)
    if sign > 0:
        placements[placement.instance_id] = placement
    else:
        del placements[placement.instance_id]
    floating_vcpus = host.floating_vcpus + sign * placement.floating_vcpus
    floating_memory_mb = host.floating_memory_mb + sign * placement.floating_memory_mb
    return replace(
        host,
        usage=tuple(usage),
        placements=MappingProxyType(placements),
        floating_vcpus=floating_vcpus,
        floating_memory_mb=floating_memory_mb,
        totals=_totals(host.cells, tuple(usage), floating_vcpus, floating_memory_mb),
    )


def apply(host: HostState, placement: Placement, *, allocate: bool = False) -> HostState:
    """Consume a placement: its devices become claimed (or allocated), usage grows.

    Raises :class:`~pcifleet.domain.errors.InvalidTransition` when a device is no longer
    available (the view was stale) and ``AlreadyExists`` when the instance is already placed.
    """
    if placement.instance_id in host.placements:
        raise AlreadyExists(f"instance {placement.instance_id} is already placed on {host.name}")
    op = Operation.ALLOCATE if allocate else Operation.CLAIM
    owner = placement.instance_id
    host = host.transitions((address, op, owner) for address in placement.all_devices)
    return _account(host, placement, 1)


def release(host: HostState, instance_id: str) -> HostState:
    """Free an instance's devices (restoring their relatives) and its CPU and memory."""
    placement = host.placements.get(instance_id)
    if placement is None:
        raise NotFound(f"instance {instance_id} has no placement on host {host.name}")
    return _account(free_held(host, instance_id, placement.all_devices), placement, -1)


def free_held(host: HostState, instance_id: str, addresses: Iterable[PciAddress]) -> HostState:
    """Free those of ``addresses`` the instance still holds (their relatives restored); the
    others (gone, or taken over meanwhile) are left alone. CPU and memory are not touched."""
    # freeing one device re-derives only its relatives' following states, never a held one:
    # which of them the guest still holds can be read off before any is freed
    devices = host.devices
    held = [
        address
        for address in addresses
        if (d := devices.get(address)) is not None and d.state in HELD and d.owner == instance_id
    ]
    return host.transitions((address, Operation.FREE, instance_id) for address in held)
