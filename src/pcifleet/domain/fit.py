"""Host fit: can this one host take this instance, and with which cells and devices?

``fit(host, request, options)`` is what the scheduler calls for every candidate host, so it
is built for speed on an indexed :class:`~pcifleet.domain.hoststate.HostState` (pools
pre-built, spec matching memoized per pool key set) and answers with either a
:class:`~pcifleet.domain.placement.Placement` or a structured
:class:`~pcifleet.domain.placement.FitFailure`.

Order of the decision:

1. host-wide vCPU/memory check;
2. guest NUMA nodes (if any) mapped onto host cells, trying mappings best first. For guests
   with device requests: cells with enough free matching devices first, then — packing, the
   default — the cell with the fewest of them (best fit: Nova's "most free first" would
   alternate guests between cells and defeat VF packing), or with the most when spreading.
   Guests without device requests take the cells with the fewest free devices first (they
   keep device cells free, Nova bug 2144660). Then cell id. Each mapping must fit CPUs,
   memory and huge pages per cell (:mod:`pcifleet.domain.cell_fit`);
3. for the first mapping that fits, the exact devices of every device request, cumulatively
   and with the PF/VF coupling (:mod:`pcifleet.domain.device_fit`). If devices fail, the next
   mapping is tried; the failure reported is that of the most promising mapping.

``apply`` and ``release`` (re-exported from :mod:`pcifleet.domain.hoststate`) update the
host view after a claim or a delete.
"""

from __future__ import annotations

from collections.abc import Iterable

from pcifleet.domain.cell_fit import cell_mappings, host_shortfall, place_cells
from pcifleet.domain.device_fit import choose_devices
from pcifleet.domain.hoststate import HostState, apply, release
from pcifleet.domain.placement import (
    DEFAULT_OPTIONS,
    FitFailure,
    FitOptions,
    FitResult,
    FitStage,
    InstanceRequest,
    Placement,
    VfStrategy,
)
from pcifleet.domain.pool import matching_pools

__all__ = ["FitResult", "apply", "fit", "release"]


def fit(
    host: HostState, request: InstanceRequest, options: FitOptions = DEFAULT_OPTIONS
) -> FitResult:
    """Decide whether ``request`` fits on ``host``; deterministic for equal inputs."""
    shortfall = host_shortfall(host, request)
    if shortfall is not None:
        return FitFailure(FitStage.RESOURCES, f"resources: {shortfall}")
    nodes = request.guest_nodes
    if nodes is None:
        devices = choose_devices(host, request, None, options)
        if isinstance(devices, FitFailure):
            return devices
        return Placement(request.instance_id, (), devices, request.vcpus, request.memory_mb)
    if nodes > len(host.cells):
        return FitFailure(
            FitStage.RESOURCES,
            f"resources: the guest has {nodes} NUMA nodes, the host {len(host.cells)} cells",
        )
    return _fit_numa(host, request, nodes, options)


def _fit_numa(
    host: HostState, request: InstanceRequest, nodes: int, options: FitOptions
) -> FitResult:
    reasons: list[str] = []
    device_failure: FitFailure | None = None
    for mapping in cell_mappings(request, cell_order(host, request, options), nodes):
        cells = place_cells(host, request, mapping)
        if isinstance(cells, str):
            if cells not in reasons:
                reasons.append(cells)
            continue
        devices = choose_devices(host, request, mapping, options)
        if not isinstance(devices, FitFailure):
            return Placement(request.instance_id, cells, devices)
        if devices.stage is FitStage.SPEC:
            return devices  # independent of the cells: no other mapping can do better
        device_failure = device_failure or devices
    if device_failure is not None:
        return device_failure
    return FitFailure(FitStage.RESOURCES, "resources: " + "; ".join(reasons))


def cell_order(host: HostState, request: InstanceRequest, options: FitOptions) -> list[int]:
    """Host cell ids, most promising first (see the module docstring)."""
    if not request.device_requests:
        free = _free_per_cell(host, range(len(host.pools)))
        return sorted(free, key=lambda cell_id: (free[cell_id], cell_id))
    wanted = {
        i
        for device_request in request.device_requests
        for i in matching_pools(host.index.keys, device_request.alternatives)
    }
    free = _free_per_cell(host, wanted)
    need = sum(device_request.count for device_request in request.device_requests)
    sign = 1 if options.vf_strategy is VfStrategy.PACK else -1
    return sorted(free, key=lambda c: (free[c] < need, sign * free[c], c))


def _free_per_cell(host: HostState, pool_ids: Iterable[int]) -> dict[int, int]:
    free = {cell.id: 0 for cell in host.cells}
    pools = host.pools
    for i in pool_ids:
        node = pools[i].key.numa_node
        if node in free:
            free[node] += pools[i].count
    return free
