"""Guest NUMA nodes on host cells: CPUs, memory and huge pages.

The capacity model, kept deliberately small:

- a cell's CPUs serve both pinned (dedicated) guests and floating (shared) vCPUs; shared
  capacity is ``unpinned CPUs x cpu_allocation_ratio``, and pinning CPUs must not push the
  cell's shared vCPUs over that capacity;
- a guest with huge pages takes whole pages of its size from the cell (capacity = the cell's
  ``total`` pages of that size); other guests take ``memory_mb`` from the cell
  (capacity = ``memory_mb x ram_allocation_ratio``);
- a guest's vCPUs and memory are split evenly over its nodes, the remainder on the first
  nodes; dedicated CPUs are the lowest-numbered free ones of the cell (deterministic);
- a host-wide check keeps guests without NUMA topology (which float over every cell) and
  NUMA guests honest with each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations, permutations

from pcifleet.domain.hoststate import HostState
from pcifleet.domain.placement import CellPlacement, CpuPolicy, InstanceRequest


def split(total: int, parts: int) -> tuple[int, ...]:
    """``total`` over ``parts`` guest nodes, the remainder going to the first ones."""
    base, extra = divmod(total, parts)
    return tuple(base + (1 if i < extra else 0) for i in range(parts))


def host_shortfall(host: HostState, request: InstanceRequest) -> str | None:
    """Why the whole host cannot take the guest's vCPUs and memory, or None."""
    totals = host.totals
    ratio = host.cpu_allocation_ratio
    if request.cpu_policy is CpuPolicy.DEDICATED:
        free = totals.unpinned_cpus - totals.shared_vcpus / ratio
        if free < request.vcpus:
            return f"host has {int(free)} CPUs free to pin, {request.vcpus} needed"
    else:
        room = totals.unpinned_cpus * ratio - totals.shared_vcpus
        if room < request.vcpus:
            return f"host has {room:g} shared vCPUs free, {request.vcpus} needed"
    if request.hugepage_size_kb is None:
        room = totals.memory_mb * host.ram_allocation_ratio - totals.memory_used_mb
        if room < request.memory_mb:
            return f"host has {room:g} MB memory free, {request.memory_mb} needed"
    return None


def place_cell(
    host: HostState,
    request: InstanceRequest,
    guest_node: int,
    cell_id: int,
    vcpus: int,
    memory: int,
) -> CellPlacement | str:
    """Guest node ``guest_node`` (``vcpus``, ``memory`` MB) on host cell ``cell_id``, or why not."""
    pinned = _pick_cpus(host, request, cell_id, vcpus)
    if isinstance(pinned, str):
        return pinned
    size = request.hugepage_size_kb
    if size is None:
        room = host.cell(cell_id).memory_mb * host.ram_allocation_ratio
        room -= host.usage_of(cell_id).memory_mb
        if room < memory:
            return f"cell {cell_id} has {room:g} MB memory free, {memory} needed"
        return CellPlacement(guest_node, cell_id, vcpus, memory, pinned)
    pages = -(-memory * 1024 // size)
    total = sum(hp.total for hp in host.cell(cell_id).hugepages if hp.size_kb == size)
    free = total - host.usage_of(cell_id).pages_used(size)
    if free < pages:
        return f"cell {cell_id} has {free} free {size} KiB huge pages, {pages} needed"
    return CellPlacement(guest_node, cell_id, vcpus, memory, pinned, size, pages)


def _pick_cpus(
    host: HostState, request: InstanceRequest, cell_id: int, vcpus: int
) -> frozenset[int] | str:
    cell = host.cell(cell_id)
    usage = host.usage_of(cell_id)
    ratio = host.cpu_allocation_ratio
    unpinned = len(cell.cpus) - len(usage.pinned)
    if request.cpu_policy is CpuPolicy.SHARED:
        room = unpinned * ratio - usage.shared_vcpus
        if room < vcpus:
            return f"cell {cell_id} has {room:g} shared vCPUs free, {vcpus} needed"
        return frozenset()
    free = sorted(cell.cpus - usage.pinned)
    if len(free) < vcpus:
        return f"cell {cell_id} has {len(free)} free CPUs to pin, {vcpus} needed"
    if (unpinned - vcpus) * ratio < usage.shared_vcpus:
        return (
            f"cell {cell_id}: pinning {vcpus} CPUs would leave too few for its "
            f"{usage.shared_vcpus} shared vCPUs"
        )
    return frozenset(free[:vcpus])


def place_cells(
    host: HostState, request: InstanceRequest, mapping: tuple[int, ...]
) -> tuple[CellPlacement, ...] | str:
    """Every guest node on its host cell (``mapping[i]`` hosts guest node i), or why not."""
    nodes = len(mapping)
    placed = []
    for node, (cell_id, vcpus, memory) in enumerate(
        zip(mapping, split(request.vcpus, nodes), split(request.memory_mb, nodes), strict=True)
    ):
        cell = place_cell(host, request, node, cell_id, vcpus, memory)
        if isinstance(cell, str):
            return cell
        placed.append(cell)
    return tuple(placed)


def cell_mappings(
    request: InstanceRequest, order: list[int], nodes: int
) -> Iterator[tuple[int, ...]]:
    """Host cells for the guest nodes, best first (``order`` is the preferred cell order).

    When every guest node is the same size, which node lands where does not matter, so
    combinations suffice; otherwise every permutation is tried (cheap for 2-4 cells).
    """
    even = request.vcpus % nodes == 0 and request.memory_mb % nodes == 0
    return combinations(order, nodes) if even else permutations(order, nodes)
