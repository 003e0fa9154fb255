"""Replay a workload on the pure domain: ``fit`` + ``apply`` per host, first fitting host wins.

This is Nova's host selection rule in the workload ("the first host by index that passes its
filters") with pcifleet's host fit as the filter. It needs no database and no scheduler, so it
checks the workload loader and the fit's decisions against ``nova-decisions.json`` on their
own; the benchmark's service path (schedule + claim, committed) is measured separately.

Two replays:

- :func:`replay_first_fit`: pcifleet decides every request on the state its own earlier
  decisions made. Differences with Nova cascade (one VF on another cell changes which hosts
  are full later), so the totals compare, the choices drift apart.
- :func:`replay_lockstep`: every request is decided on the state *Nova's* decisions made so
  far, then Nova's placement is applied. Each request is judged on its own: would pcifleet
  take Nova's host, which cell and devices would it choose there, and is Nova's placement
  legal under the PF/VF coupling at all.

Hosts start as one shared immutable :class:`HostState` (identical hardware) and only the hosts
that received a guest get their own copy-on-write state.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import Conflict
from pcifleet.domain.fit import apply, fit
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.placement import (
    DEFAULT_OPTIONS,
    CellPlacement,
    FitFailure,
    FitOptions,
    InstanceRequest,
    Placement,
)
from pcifleet.sim.nova_compare import Outcome
from pcifleet.sim.workload import BootRequest, Fleet, NovaDecision

#: called after each request with (requests done, requests total)
Progress = Callable[[int, int], None]


def initial_host(fleet: Fleet, name: str = "template") -> HostState:
    """A fresh host of the fleet's template, as the fit sees it."""
    template = fleet.template
    return HostState.build(
        name,
        template.cells,
        template.devices,
        cpu_allocation_ratio=template.cpu_allocation_ratio,
        ram_allocation_ratio=template.ram_allocation_ratio,
    )


def _rejection(failures: Counter[str], hosts: int) -> str:
    """The reasons hosts refused, most common first ("100 hosts: 60 <reason>; 40 <reason>")."""
    parts = [f"{count} {reason}" for reason, count in failures.most_common(3)]
    more = len(failures) - 3
    tail = f"; {more} other reasons" if more > 0 else ""
    return f"{hosts} hosts: " + "; ".join(parts) + tail


def _first_fit(
    hosts: list[HostState], request: InstanceRequest, options: FitOptions
) -> tuple[int, Placement] | Counter[str]:
    failures: Counter[str] = Counter()
    for i, host in enumerate(hosts):
        result = fit(host, request, options)
        if isinstance(result, Placement):
            return i, result
        failures[result.message] += 1
    return failures


def _verdict(host: HostState, request: InstanceRequest, options: FitOptions) -> str:
    result = fit(host, request, options)
    return result.message if isinstance(result, FitFailure) else ""


def replay_first_fit(
    fleet: Fleet,
    requests: Sequence[BootRequest],
    *,
    options: FitOptions = DEFAULT_OPTIONS,
    decisions: Mapping[int, NovaDecision] | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Place every request on the first host (by index) that fits, in request order.

    With ``decisions`` (Nova's, by request index), an outcome on another host than Nova's
    carries the fit's verdict on Nova's host at that moment.
    """
    base = initial_host(fleet)
    hosts = [base] * len(fleet.hosts)
    outcomes = []
    for done, boot in enumerate(requests, 1):
        request = boot.instance_request()
        found = _first_fit(hosts, request, options)
        if isinstance(found, Counter):
            outcomes.append(Outcome(boot.index, False, reason=_rejection(found, len(hosts))))
        else:
            index, placement = found
            nova = decisions.get(boot.index) if decisions else None
            verdict = ""
            if nova is not None and nova.host is not None and nova.host != index:
                verdict = _verdict(hosts[nova.host], request, options)
            hosts[index] = apply(hosts[index], placement)
            outcomes.append(
                Outcome(
                    boot.index,
                    True,
                    index,
                    placement.host_cells,
                    placement.all_devices,
                    nova_host_verdict=verdict,
                )
            )
        if progress is not None:
            progress(done, len(requests))
    return outcomes


@dataclass(frozen=True, slots=True)
class LockstepStep:
    """One request judged on the state Nova's earlier decisions made."""

    index: int
    #: pcifleet's own first-fit choice on that state
    ours: Outcome
    #: pcifleet's fit on Nova's host ("" = it fits there), None when Nova rejected
    on_nova_host: Outcome | None
    #: why Nova's placement is illegal for pcifleet (PF/VF coupling), "" when it is legal
    nova_illegal: str = ""


def placement_of(
    boot: BootRequest, numa_cell: int | None, devices: Sequence[PciAddress]
) -> Placement:
    """A placement of ``boot`` on one host cell with ``devices`` (split over the device
    requests in request order), as a replay's decision is applied to a host view."""
    request = boot.instance_request()
    remaining = list(devices)
    grouped = []
    for device_request in request.device_requests:
        grouped.append(tuple(remaining[: device_request.count]))
        del remaining[: device_request.count]
    if numa_cell is not None and request.guest_nodes:
        cell = CellPlacement(0, numa_cell, request.vcpus, request.memory_mb)
        return Placement(request.instance_id, (cell,), tuple(grouped))
    return Placement(request.instance_id, (), tuple(grouped), request.vcpus, request.memory_mb)


def nova_placement(boot: BootRequest, nova: NovaDecision) -> Placement:
    """Nova's decision as a placement."""
    return placement_of(boot, nova.numa_cell, nova.devices)


class NovaHostJudge:
    """Follows a replay on a domain copy of the fleet to say, whenever the replay put a guest
    on another host than Nova did, what pcifleet's fit thinks of Nova's host at that moment.

    Applying each decision also re-checks it: a device handed out twice, or against the PF/VF
    coupling, raises :class:`~pcifleet.domain.errors.InvalidTransition`.
    """

    def __init__(self, fleet: Fleet, decisions: Mapping[int, NovaDecision]) -> None:
        self.hosts = [initial_host(fleet)] * len(fleet.hosts)
        self.decisions = decisions

    def judge(self, boot: BootRequest, outcome: Outcome) -> Outcome:
        nova = self.decisions.get(boot.index)
        verdict = ""
        if outcome.placed and nova is not None and nova.host not in (None, outcome.host):
            assert nova.host is not None
            verdict = _verdict(self.hosts[nova.host], boot.instance_request(), DEFAULT_OPTIONS)
        if outcome.placed and outcome.host is not None:
            cell = outcome.numa_cells[0] if outcome.numa_cells else None
            placement = placement_of(boot, cell, outcome.devices)
            self.hosts[outcome.host] = apply(self.hosts[outcome.host], placement)
        return replace(outcome, nova_host_verdict=verdict)


def _outcome(boot: BootRequest, host: int, result: Placement | FitFailure) -> Outcome:
    if isinstance(result, FitFailure):
        return Outcome(boot.index, False, host, reason=result.message)
    return Outcome(boot.index, True, host, result.host_cells, result.all_devices)


def _lockstep_step(
    hosts: list[HostState], boot: BootRequest, nova: NovaDecision | None, options: FitOptions
) -> LockstepStep:
    request = boot.instance_request()
    found = _first_fit(hosts, request, options)
    if isinstance(found, Counter):
        ours = Outcome(boot.index, False, reason=_rejection(found, len(hosts)))
    else:
        ours = _outcome(boot, found[0], found[1])
    if nova is None or nova.host is None:
        return LockstepStep(boot.index, ours, None)
    on_host = fit(hosts[nova.host], request, options)
    illegal = ""
    try:
        hosts[nova.host] = apply(hosts[nova.host], nova_placement(boot, nova))
    except Conflict as exc:
        illegal = exc.message
        if isinstance(on_host, Placement):  # keep the replay going with pcifleet's choice
            hosts[nova.host] = apply(hosts[nova.host], on_host)
    return LockstepStep(boot.index, ours, _outcome(boot, nova.host, on_host), illegal)


def replay_lockstep(
    fleet: Fleet,
    requests: Sequence[BootRequest],
    decisions: Mapping[int, NovaDecision],
    *,
    options: FitOptions = DEFAULT_OPTIONS,
) -> list[LockstepStep]:
    """Judge every request on the fleet as Nova's decisions left it (see the module doc)."""
    hosts = [initial_host(fleet)] * len(fleet.hosts)
    return [_lockstep_step(hosts, boot, decisions.get(boot.index), options) for boot in requests]
