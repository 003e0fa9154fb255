"""What happened on each host, and "why nothing fits" in one sentence an operator can act on.

Every host the scheduler looked at ends with a :class:`HostOutcome`: passed (with its
placement), or failed at a stage — ``down`` (down or disabled), ``resources`` (vCPUs, memory,
huge pages, NUMA cells) or one of the device filter stages of the fit (``spec``, ``numa``,
``unrequested_pf``, ...) for one device request. Failures come from the index's cheap
pre-filter or from the full host fit; both speak the same stages.

:func:`summarize` groups failures by stage and request (and, for resources, by what was
short) and writes the sentence, e.g. "12 hosts: 3 down or disabled; 9 had fewer than 2 free
VFs on physnet2 on one NUMA node under policy required". Each group keeps a bounded number
of example hosts with their own precise message, so the output stays small on large fleets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pcifleet.control.scheduler.weighers import Weight
from pcifleet.domain.device_fit import label
from pcifleet.domain.placement import FitFailure, FitStage, InstanceRequest, Placement

#: the stage of a host that is down or disabled (no fit runs there)
DOWN: Final = "down"
RESOURCES: Final = str(FitStage.RESOURCES)
DEFAULT_EXAMPLES: Final = 3


@dataclass(frozen=True, slots=True)
class HostOutcome:
    host_id: str
    host: str
    passed: bool
    #: None when passed; else ``down``, ``resources`` or a device filter stage
    stage: str | None = None
    #: the precise reason on this host (empty when passed)
    message: str = ""
    #: the device request that failed (index in the instance's device requests)
    request_index: int | None = None
    weight: Weight = ()
    placement: Placement | None = None

    @classmethod
    def failed(
        cls, host_id: str, host: str, failure: FitFailure, weight: Weight = ()
    ) -> HostOutcome:
        return cls(
            host_id,
            host,
            False,
            str(failure.stage),
            failure.message,
            failure.request_index,
            weight,
        )


@dataclass(frozen=True, slots=True)
class OutcomeGroup:
    """Hosts that ended the same way: passed, or failed at one stage for one reason."""

    passed: bool
    stage: str | None
    request_index: int | None
    #: the verb phrase of the sentence ("had fewer than 2 free VFs on physnet2")
    summary: str
    count: int
    #: the first hosts of the group, in the order they were tried
    examples: tuple[HostOutcome, ...]


@dataclass(frozen=True, slots=True)
class Summary:
    hosts: int
    groups: tuple[OutcomeGroup, ...]
    #: "12 hosts: 3 down or disabled; 9 had fewer than ..." (failures only)
    sentence: str

    def details(self) -> tuple[str, ...]:
        """One line per failure group with an example host's own message."""
        lines = []
        for group in self.groups:
            if group.passed:
                continue
            example = group.examples[0] if group.examples else None
            where = f" (e.g. {example.host}: {example.message})" if example else ""
            lines.append(f"{group.count} {group.summary}{where}")
        return tuple(lines)


def _resource_kind(message: str) -> str:
    if "huge pages" in message:
        return "had too few free huge pages"
    if "NUMA nodes" in message:
        return "had too few NUMA cells"
    if "CPUs" in message:
        return "had too few free vCPUs"
    if "memory" in message:
        return "had too little free memory"
    return "had too few free resources"


def _device_phrase(request: InstanceRequest, outcome: HostOutcome, nodes: int | None) -> str:
    assert outcome.request_index is not None
    device_request = request.device_requests[outcome.request_index]
    base = f"had fewer than {device_request.count} free {label(device_request)}"
    stage = outcome.stage
    if stage == FitStage.NUMA:
        where = "one NUMA node" if nodes in (None, 1) else f"the guest's {nodes} NUMA nodes"
        return f"{base} on {where} under policy {request.policy_of(device_request)}"
    suffix = _STAGE_SUFFIX.get(stage or "", "")
    return base + suffix


_STAGE_SUFFIX: Final = {
    str(FitStage.UNREQUESTED_PF): " once PFs that were not asked for are left out",
    str(FitStage.UNREQUESTED_VDPA): " once vDPA devices that were not asked for are left out",
    str(FitStage.UNREQUESTED_REMOTE_MANAGED): (
        " once remote-managed devices that were not asked for are left out"
    ),
    str(FitStage.LIVE_MIGRATABLE): " with the requested live_migratable value",
}


def phrase(request: InstanceRequest, outcome: HostOutcome) -> str:
    """The verb phrase of a host's outcome, the same for every host that failed alike."""
    if outcome.passed:
        return "passed"
    if outcome.stage == DOWN:
        return "down or disabled"
    if _by_message(outcome):
        return _resource_kind(outcome.message)
    return _device_phrase(request, outcome, request.guest_nodes)


def _by_message(outcome: HostOutcome) -> bool:
    """Whether the phrase of a failed ``outcome`` comes from its message (resources), not
    from its stage and device request alone."""
    return outcome.stage == RESOURCES or outcome.request_index is None


def summarize(
    request: InstanceRequest,
    outcomes: Sequence[HostOutcome],
    examples: int = DEFAULT_EXAMPLES,
) -> Summary:
    """Group ``outcomes`` (in the order hosts were tried) and write the failure sentence."""
    groups: dict[tuple[bool, str | None, int | None, str], list[HostOutcome]] = {}
    phrases: dict[tuple[bool, str | None, int | None, str], str] = {}
    for outcome in outcomes:
        # a device or a down host's phrase depends on its group alone: worded once per group
        kind = (outcome.passed, outcome.stage, outcome.request_index, _wording(outcome))
        text = phrases.get(kind)
        if text is None:
            text = phrases[kind] = phrase(request, outcome)
        groups.setdefault((*kind[:3], text), []).append(outcome)
    built = [
        OutcomeGroup(passed, stage, index, text, len(members), tuple(members[:examples]))
        for (passed, stage, index, text), members in groups.items()
    ]
    built.sort(key=lambda g: (not g.passed, _stage_rank(g.stage), g.request_index or 0, -g.count))
    return Summary(len(outcomes), tuple(built), _sentence(len(outcomes), built))


def _wording(outcome: HostOutcome) -> str:
    """What of ``outcome`` besides its group decides its phrase: a resource message's."""
    return outcome.message if _by_message(outcome) and not outcome.passed else ""


def _stage_rank(stage: str | None) -> int:
    order = [None, DOWN, *(str(s) for s in FitStage)]
    return order.index(stage) if stage in order else len(order)


def _sentence(total: int, groups: Sequence[OutcomeGroup]) -> str:
    hosts = f"{total} host{'s' if total != 1 else ''}"
    if total == 0:
        return "no hosts are registered"
    parts = [f"{g.count} {g.summary}" for g in groups if not g.passed]
    if not parts:
        return f"{hosts}: all passed"
    return f"{hosts}: " + "; ".join(parts)
