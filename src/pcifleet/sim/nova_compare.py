"""Compare a replay's decisions with Nova's (``nova-decisions.json``), request by request.

Each request lands in exactly one :class:`Difference` category; the counts, a per-kind
breakdown and a few examples with the reason make the report. Device differences are
sub-classified by how the chosen devices relate (same PF, other PF on the same cell, ...),
because that is what explains them: pcifleet packs VFs lowest address first onto PFs already
in use, Nova takes them in its own pool order.

Pure: the replay (domain-level or through the services) hands over :class:`Outcome` records.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device
from pcifleet.sim.workload import BootRequest, NovaDecision

MAX_EXAMPLES_PER_CATEGORY: Final = 3


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one replayed boot got."""

    index: int
    placed: bool
    #: host index in the fleet (None when rejected)
    host: int | None = None
    numa_cells: tuple[int, ...] = ()
    devices: tuple[PciAddress, ...] = ()
    #: why it was rejected
    reason: str = ""
    #: when placed elsewhere than Nova: why pcifleet's fit refused Nova's host at that moment
    #: ("" when it did not refuse it, or nobody asked)
    nova_host_verdict: str = ""


class Difference(enum.StrEnum):
    SAME = "same host, cell and devices"
    OTHER_DEVICES = "same host and cell, other devices"
    OTHER_CELL = "same host, other NUMA cell"
    OTHER_HOST = "other host"
    ONLY_NOVA_PLACED = "rejected by pcifleet, placed by Nova"
    ONLY_PCIFLEET_PLACED = "placed by pcifleet, rejected by Nova"
    BOTH_REJECTED = "rejected by both"


class DeviceRelation(enum.StrEnum):
    """How pcifleet's devices relate to Nova's when both placed on the same host and cell."""

    SAME_PF = "VFs of the same PF(s), other VF numbers"
    OTHER_PF = "VFs of another PF"
    OTHER_DEVICE = "other device of the same kind"


@dataclass(frozen=True, slots=True)
class Example:
    index: int
    kind: str
    difference: Difference
    detail: str


@dataclass(frozen=True, slots=True)
class Comparison:
    total: int
    counts: Mapping[Difference, int]
    #: (request kind, difference) -> count
    by_kind: Mapping[tuple[str, Difference], int]
    device_relations: Mapping[DeviceRelation, int]
    examples: tuple[Example, ...]
    ours_placed: int = 0
    nova_placed: int = 0
    #: both placed: on the same host / same host and cell / same host, cell and devices
    same_host: int = 0
    same_cell: int = 0
    same_devices: int = 0
    #: per-request verdicts on Nova's host when pcifleet chose another (reason -> count)
    nova_host_verdicts: Mapping[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, int]:
        """The counts for the benchmark's JSON line."""
        return {
            "nova_placed": self.nova_placed,
            "nova_same_host": self.same_host,
            "nova_same_cell": self.same_cell,
            "nova_same_devices": self.same_devices,
            "nova_other_devices": self.counts.get(Difference.OTHER_DEVICES, 0),
            "nova_other_cell": self.counts.get(Difference.OTHER_CELL, 0),
            "nova_other_host": self.counts.get(Difference.OTHER_HOST, 0),
            "nova_only_nova_placed": self.counts.get(Difference.ONLY_NOVA_PLACED, 0),
            "nova_only_pcifleet_placed": self.counts.get(Difference.ONLY_PCIFLEET_PLACED, 0),
        }


def classify(ours: Outcome, nova: NovaDecision) -> Difference:
    if not ours.placed:
        return Difference.ONLY_NOVA_PLACED if nova.placed else Difference.BOTH_REJECTED
    if not nova.placed:
        return Difference.ONLY_PCIFLEET_PLACED
    if ours.host != nova.host:
        return Difference.OTHER_HOST
    if nova.numa_cell is not None and nova.numa_cell not in ours.numa_cells:
        return Difference.OTHER_CELL
    if sorted(ours.devices) != sorted(nova.devices):
        return Difference.OTHER_DEVICES
    return Difference.SAME


def device_relation(
    ours: Sequence[PciAddress], nova: Sequence[PciAddress], devices: Mapping[PciAddress, Device]
) -> DeviceRelation:
    """How two device choices on one host differ (``devices``: the host's, by address)."""

    def parents(addresses: Sequence[PciAddress]) -> set[PciAddress | None]:
        return {devices[a].parent if a in devices else None for a in addresses}

    mine, theirs = parents(ours), parents(nova)
    if None in mine or None in theirs:
        return DeviceRelation.OTHER_DEVICE
    return DeviceRelation.SAME_PF if mine == theirs else DeviceRelation.OTHER_PF


def _short(addresses: Sequence[PciAddress]) -> str:
    return ",".join(str(a) for a in addresses) or "-"


def _detail(ours: Outcome, nova: NovaDecision, difference: Difference, relation: str) -> str:
    mine = f"pcifleet host {ours.host} cell {list(ours.numa_cells)} {_short(ours.devices)}"
    theirs = f"Nova host {nova.host} cell {nova.numa_cell} {_short(nova.devices)}"
    if difference is Difference.ONLY_NOVA_PLACED:
        return f"{theirs}; pcifleet: {ours.reason}"
    if difference is Difference.ONLY_PCIFLEET_PLACED:
        return f"{mine}; Nova rejected it"
    extra = ""
    if difference is Difference.OTHER_HOST and ours.nova_host_verdict:
        extra = f"; pcifleet on Nova's host: {ours.nova_host_verdict}"
    elif relation:
        extra = f"; {relation}"
    return f"{mine} vs {theirs}{extra}"


def compare(
    outcomes: Sequence[Outcome],
    decisions: Sequence[NovaDecision],
    requests: Sequence[BootRequest],
    devices: Mapping[PciAddress, Device],
) -> Comparison:
    """Compare outcomes with Nova's decisions (both in request order; extra ones ignored).

    ``devices``: one host's devices by address (every host has the template's hardware).
    """
    nova_by_index = {d.index: d for d in decisions}
    kinds = {r.index: r.kind for r in requests}
    counts: Counter[Difference] = Counter()
    by_kind: Counter[tuple[str, Difference]] = Counter()
    relations: Counter[DeviceRelation] = Counter()
    verdicts: Counter[str] = Counter()
    examples: list[Example] = []
    shown: Counter[str] = Counter()
    for ours in outcomes:
        nova = nova_by_index.get(ours.index)
        if nova is None:
            continue
        difference = classify(ours, nova)
        counts[difference] += 1
        kind = kinds.get(ours.index, "")
        by_kind[(kind, difference)] += 1
        relation = ""
        if difference is Difference.OTHER_DEVICES:
            found = device_relation(ours.devices, nova.devices, devices)
            relations[found] += 1
            relation = found.value
        if difference is Difference.OTHER_HOST:
            verdicts[_verdict_key(ours.nova_host_verdict)] += 1
        label = f"{difference}/{relation}" if relation else str(difference)
        if difference is not Difference.SAME and shown[label] < MAX_EXAMPLES_PER_CATEGORY:
            shown[label] += 1
            examples.append(
                Example(ours.index, kind, difference, _detail(ours, nova, difference, relation))
            )
    same_devices = counts[Difference.SAME]
    same_cell = same_devices + counts[Difference.OTHER_DEVICES]
    return Comparison(
        total=sum(counts.values()),
        counts=dict(counts),
        by_kind=dict(by_kind),
        device_relations=dict(relations),
        examples=tuple(examples),
        ours_placed=sum(1 for o in outcomes if o.placed and o.index in nova_by_index),
        nova_placed=sum(1 for d in decisions if d.placed),
        same_host=same_cell + counts[Difference.OTHER_CELL],
        same_cell=same_cell,
        same_devices=same_devices,
        nova_host_verdicts=dict(verdicts),
    )


def _verdict_key(verdict: str) -> str:
    """Group verdicts by their first clause (details such as counts vary per request)."""
    if not verdict:
        return "fits there too (pcifleet's weigher preferred another host)"
    return verdict.split(":", 1)[0]
