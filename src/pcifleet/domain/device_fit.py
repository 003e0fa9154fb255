"""Choosing the exact devices of an instance's device requests on one host.

Per request, the candidate pools go through Nova's filter stages in Nova's order (§5.2):
spec match, NUMA policy, unrequested PFs, unrequested vDPA, unrequested remote-managed,
live_migratable. Requests are applied cumulatively on one scratch pad, which also applies the
PF/VF coupling inside the decision: choosing a VF makes its PF unusable, choosing a PF makes
its VFs unusable, and no device is chosen twice. (Nova's scheduler ignores the coupling and
fails later on the compute; this fit does not.)

One deliberate difference: when a non-``required`` policy asks "are there enough devices on
the guest's cells?", only devices that survive the later type stages count. Nova counts
unrequested PFs there too, then drops them and fails although VFs were free elsewhere.

Among the surviving pools, devices are picked from the best pool first: on the guest's cells
(then unknown NUMA, then elsewhere), fewest tags (richer devices stay free), then VFs packed
onto PFs that are already in use (or spread, per :class:`FitOptions`), then pool order; within
a pool, lowest address first. Everything is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceType
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.placement import (
    FitFailure,
    FitOptions,
    FitStage,
    InstanceRequest,
    StageCount,
    VfStrategy,
)
from pcifleet.domain.pool import (
    LIVE_MIGRATABLE,
    PHYSICAL_NETWORK,
    REMOTE_MANAGED,
    KeySet,
    Pool,
    PoolKey,
    matching_pools,
    truthy,
)
from pcifleet.domain.request import DeviceMatch, DeviceRequest, NumaPolicy, RequesterKind


@dataclass(frozen=True, slots=True)
class Wants:
    """What a request's alternatives ask for explicitly (decides the type stages)."""

    pf: bool
    vdpa: bool
    remote_managed: bool
    #: "true"/"false" when every alternative asks for that value, else None (no filter)
    live_migratable: str | None

    def keeps(self, stage: FitStage, key: PoolKey) -> bool:
        """Whether a pool survives one of the type stages."""
        if stage is FitStage.UNREQUESTED_PF:
            return self.pf or key.dev_type is not DeviceType.PF
        if stage is FitStage.UNREQUESTED_VDPA:
            return self.vdpa or key.dev_type is not DeviceType.VDPA
        if stage is FitStage.UNREQUESTED_REMOTE_MANAGED:
            return self.remote_managed or not key.remote_managed
        return self.live_migratable is None or key.live_migratable == self.live_migratable


TYPE_STAGES = (
    FitStage.UNREQUESTED_PF,
    FitStage.UNREQUESTED_VDPA,
    FitStage.UNREQUESTED_REMOTE_MANAGED,
    FitStage.LIVE_MIGRATABLE,
)


@lru_cache(maxsize=1024)
def wants_of(alternatives: tuple[DeviceMatch, ...]) -> Wants:
    migratable = {_folded(alt.prop(LIVE_MIGRATABLE)) for alt in alternatives}
    only = migratable.pop() if len(migratable) == 1 else None
    return Wants(
        pf=any(alt.dev_type is DeviceType.PF for alt in alternatives),
        vdpa=any(alt.dev_type is DeviceType.VDPA for alt in alternatives),
        remote_managed=any(truthy(alt.prop(REMOTE_MANAGED)) for alt in alternatives),
        live_migratable=only if only in ("true", "false") else None,
    )


def _folded(value: str | None) -> str | None:
    return None if value is None else value.lower()


class Scratch:
    """Devices chosen so far in one fit attempt, with the coupling they imply."""

    __slots__ = ("blocked_pfs", "chosen", "chosen_pfs", "taken")

    def __init__(self) -> None:
        self.chosen: set[PciAddress] = set()
        #: pool index -> devices taken from the front of its free list (non-PF pools)
        self.taken: dict[int, int] = {}
        self.chosen_pfs: set[PciAddress] = set()
        #: PFs with a chosen VF: no longer usable whole
        self.blocked_pfs: set[PciAddress] = set()

    def available(self, i: int, pool: Pool) -> int:
        key = pool.key
        if key.parent is not None:  # VF-like: gone when its PF was chosen
            if self.chosen_pfs and key.parent in self.chosen_pfs:
                return 0
            return len(pool.free) - self.taken.get(i, 0)
        if key.dev_type is DeviceType.PF and (self.chosen_pfs or self.blocked_pfs):
            skip = self.chosen_pfs | self.blocked_pfs
            return sum(1 for a in pool.free if a not in skip)
        return len(pool.free) - self.taken.get(i, 0)

    def take(self, i: int, pool: Pool, n: int) -> tuple[PciAddress, ...]:
        key = pool.key
        if key.dev_type is DeviceType.PF:
            skip = self.chosen_pfs | self.blocked_pfs
            got = tuple(a for a in pool.free if a not in skip)[:n]
            self.chosen_pfs.update(got)
        else:
            start = self.taken.get(i, 0)
            got = pool.free[start : start + n]
            self.taken[i] = start + n
            if key.parent is not None:
                self.blocked_pfs.add(key.parent)
        self.chosen.update(got)
        return got


def choose_devices(
    host: HostState,
    request: InstanceRequest,
    cells: tuple[int, ...] | None,
    options: FitOptions,
) -> tuple[tuple[PciAddress, ...], ...] | FitFailure:
    """The devices of every device request, in request order, or the first failure.

    Requests are picked greedily in request order. If that fails while some requests want
    whole PFs and others do not, the PF requests are picked first in a second attempt: VFs
    picked first (spread over PFs, or needing the only PF of a network) can block every PF
    that a later request needed, while the reverse order leaves them the remaining PFs.
    """
    order = range(len(request.device_requests))
    chosen = _choose_in_order(host, request, cells, options, order)
    if not isinstance(chosen, FitFailure):
        return chosen
    wants_pf = [wants_of(r.alternatives).pf for r in request.device_requests]
    if any(wants_pf) and not all(wants_pf):
        retry_order = sorted(order, key=lambda i: not wants_pf[i])
        retry = _choose_in_order(host, request, cells, options, retry_order)
        if not isinstance(retry, FitFailure):
            return retry
    return chosen


def _choose_in_order(
    host: HostState,
    request: InstanceRequest,
    cells: tuple[int, ...] | None,
    options: FitOptions,
    order: Sequence[int],
) -> tuple[tuple[PciAddress, ...], ...] | FitFailure:
    scratch = Scratch()
    chosen: dict[int, tuple[PciAddress, ...]] = {}
    for index in order:
        device_request = request.device_requests[index]
        got = _choose_one(host, request, index, device_request, cells, options, scratch)
        if isinstance(got, FitFailure):
            return got
        chosen[index] = got
    return tuple(chosen[i] for i in range(len(order)))


@dataclass(frozen=True, slots=True)
class Plan:
    """A request's alternatives against one pool key set: which pools match, and how far.

    Cached per (key set, alternatives), so the type stages cost an int compare per pool, and
    hosts with identical hardware share one plan.
    """

    wants: Wants
    #: spec-matching pool index -> how many of the TYPE_STAGES it survives (4 = all)
    survives: Mapping[int, int]


ALL_TYPE_STAGES = len(TYPE_STAGES)


@lru_cache(maxsize=4096)
def plan_of(keys: KeySet, alternatives: tuple[DeviceMatch, ...]) -> Plan:
    wants = wants_of(alternatives)
    survives = {}
    for i in matching_pools(keys, alternatives):
        depth = 0
        while depth < ALL_TYPE_STAGES and wants.keeps(TYPE_STAGES[depth], keys.keys[i]):
            depth += 1
        survives[i] = depth
    return Plan(wants, survives)


def _choose_one(
    host: HostState,
    request: InstanceRequest,
    index: int,
    device_request: DeviceRequest,
    cells: tuple[int, ...] | None,
    options: FitOptions,
    scratch: Scratch,
) -> tuple[PciAddress, ...] | FitFailure:
    pools = host.pools
    plan = plan_of(host.index.keys, device_request.alternatives)
    need = device_request.count
    avail = {i: n for i in plan.survives if (n := scratch.available(i, pools[i])) > 0}
    policy = request.policy_of(device_request)
    kept = _numa_stage(host, list(avail), avail, cells, policy, need, plan)
    final = [i for i in kept if plan.survives[i] == ALL_TYPE_STAGES]
    if sum(avail[i] for i in final) >= need:
        return _pick(host, final, cells, need, options, scratch)
    stages = _stage_counts(host, list(avail), avail, cells, policy, need, plan)
    return _failure(host, Failed(index, device_request, cells, policy, avail, stages), scratch)


def _stage_counts(
    host: HostState,
    ids: list[int],
    avail: dict[int, int],
    cells: tuple[int, ...] | None,
    policy: NumaPolicy,
    need: int,
    plan: Plan,
) -> list[tuple[FitStage, list[int]]]:
    """The pools kept by each stage, in Nova's order, up to the first one short of need."""
    stages = [(FitStage.SPEC, ids)]
    kept = ids
    for depth, stage in enumerate((FitStage.NUMA, *TYPE_STAGES)):
        if sum(avail[i] for i in kept) < need:
            break
        if stage is FitStage.NUMA:
            kept = _numa_stage(host, kept, avail, cells, policy, need, plan)
        else:
            kept = [i for i in kept if plan.survives[i] >= depth]
        stages.append((stage, kept))
    return stages


def _numa_stage(
    host: HostState,
    ids: list[int],
    avail: dict[int, int],
    cells: tuple[int, ...] | None,
    policy: NumaPolicy,
    need: int,
    plan: Plan,
) -> list[int]:
    """Nova's ``_filter_pools_for_numa_cells``; a no-op without guest NUMA topology."""
    if cells is None:
        return ids
    pools = host.pools
    strict = [i for i in ids if pools[i].key.numa_node in cells]
    if policy is NumaPolicy.REQUIRED:
        return strict

    def usable(selected: list[int]) -> int:
        survives = plan.survives
        return sum(avail[i] for i in selected if survives[i] == ALL_TYPE_STAGES)

    if usable(strict) >= need:
        return strict
    if policy is NumaPolicy.SOCKET:
        return _on_sockets(host, ids, cells)
    loose = [i for i in ids if pools[i].key.numa_node in cells or pools[i].key.numa_node is None]
    if policy is NumaPolicy.LEGACY or usable(loose) >= need:
        return loose
    return ids  # preferred: anywhere; _pick still tries the guest's cells first


def _on_sockets(host: HostState, ids: list[int], cells: tuple[int, ...]) -> list[int]:
    socket_of = host.index.socket_of
    if any(socket is None for socket in socket_of.values()):
        return []
    sockets = {socket_of[c] for c in cells}
    pools = host.pools
    return [
        i
        for i in ids
        if (node := pools[i].key.numa_node) is not None and socket_of.get(node) in sockets
    ]


def _pick(
    host: HostState,
    kept: list[int],
    cells: tuple[int, ...] | None,
    need: int,
    options: FitOptions,
    scratch: Scratch,
) -> tuple[PciAddress, ...]:
    pools = host.pools
    pack = options.vf_strategy is VfStrategy.PACK
    got: list[PciAddress] = []
    while need:
        ranked = []
        for i in kept:
            n = scratch.available(i, pools[i])
            if n:
                ranked.append((_rank(pools[i], n, cells, pack, scratch), i, n))
        _, best, n = min(ranked)
        taken = scratch.take(best, pools[best], min(n, need) if pack else 1)
        got.extend(taken)
        need -= len(taken)
    return tuple(got)


def _rank(
    pool: Pool, available: int, cells: tuple[int, ...] | None, pack: bool, scratch: Scratch
) -> tuple[int, int, int, int]:
    key = pool.key
    node = key.numa_node
    place = 0 if cells is None or node in cells else 1 if node is None else 2
    if key.parent is None:
        return (place, len(key.tags), 0, 0)
    touched = pool.in_use > 0 or key.parent in scratch.blocked_pfs
    if pack:
        return (place, len(key.tags), 0 if touched else 1, available)
    return (place, len(key.tags), 1 if touched else 0, -available)


# -- explanations -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failed:
    """Everything known about a failed request, to explain it."""

    index: int
    request: DeviceRequest
    cells: tuple[int, ...] | None
    policy: NumaPolicy
    avail: dict[int, int]
    #: the pools kept by each stage that ran
    stages: list[tuple[FitStage, list[int]]]

    def count(self, ids: list[int]) -> int:
        return sum(self.avail[i] for i in ids)


def _failure(host: HostState, failed: Failed, scratch: Scratch) -> FitFailure:
    free = sum(scratch.available(i, pool) for i, pool in enumerate(host.pools))
    befores = [free, *(failed.count(ids) for _, ids in failed.stages[:-1])]
    stages = tuple(
        StageCount(stage, before, failed.count(ids))
        for (stage, ids), before in zip(failed.stages, befores, strict=True)
    )
    last = stages[-1]
    if last.stage is FitStage.SPEC:
        text = f"spec: {last.after} of {last.before} free devices match {label(failed.request)}"
    else:
        counted = counted_noun(host, failed, failed.stages[-2][1])
        text = _SENTENCES[last.stage](last, counted, failed)
    request = failed.request
    return FitFailure(
        last.stage,
        f"{text}, {request.count} needed",
        failed.index,
        request.requester,
        request.count,
        stages,
        failed.cells,
    )


_NOUNS = {
    DeviceType.VF: ("VF", "VFs"),
    DeviceType.PF: ("PF", "PFs"),
    DeviceType.PCI: ("PCI device", "PCI devices"),
    DeviceType.VDPA: ("vDPA device", "vDPA devices"),
}


def _qualifier(request: DeviceRequest) -> str:
    networks = {alt.prop(PHYSICAL_NETWORK) for alt in request.alternatives}
    if len(networks) == 1 and (network := networks.pop()) is not None:
        return f" on {network}"
    if request.requester.kind is RequesterKind.GROUP:
        return f" of group {request.requester.name}"
    return ""


def _adjectives(request: DeviceRequest) -> str:
    """ "trusted " / "untrusted " / "remote-managed " when every alternative asks for it."""
    words = []
    trusted = {_folded(alt.prop("trusted")) for alt in request.alternatives}
    if len(trusted) == 1 and (value := trusted.pop()) is not None:
        words.append("trusted" if truthy(value) else "untrusted")
    remote = {_folded(alt.prop(REMOTE_MANAGED)) for alt in request.alternatives}
    if len(remote) == 1 and truthy(remote.pop()):
        words.append("remote-managed")
    return "".join(word + " " for word in words)


def label(request: DeviceRequest) -> str:
    """What a request asks for, as a plural noun phrase ("trusted VFs on physnet2")."""
    types = {alt.dev_type for alt in request.alternatives}
    only = types.pop() if len(types) == 1 else None
    noun = "devices" if only is None else _NOUNS[only][1]
    return _adjectives(request) + noun + _qualifier(request)


def counted_noun(host: HostState, failed: Failed, ids: list[int]) -> str:
    """The devices a stage counted: "VFs on physnet2", or "devices on physnet2 (6 VFs, 1 PF)"."""
    by_type: dict[DeviceType, int] = {}
    for i in ids:
        dev_type = host.pools[i].key.dev_type
        by_type[dev_type] = by_type.get(dev_type, 0) + failed.avail[i]
    qualifier = _qualifier(failed.request)
    if len(by_type) == 1:
        return _adjectives(failed.request) + _NOUNS[next(iter(by_type))][1] + qualifier
    if not by_type:
        return label(failed.request)
    parts = ", ".join(
        f"{n} {_NOUNS[t][0] if n == 1 else _NOUNS[t][1]}"
        for t, n in sorted(by_type.items(), key=lambda item: (-item[1], item[0]))
    )
    return f"{_adjectives(failed.request)}devices{qualifier} ({parts})"


def _nodes(cells: Sequence[int], word: str = "node") -> str:
    plural = "s" if len(cells) > 1 else ""
    return f"{word}{plural} {', '.join(str(c) for c in sorted(cells))}"


def _numa_text(s: StageCount, counted: str, failed: Failed) -> str:
    where = _nodes(failed.cells or ())
    if failed.policy is NumaPolicy.SOCKET:
        where = f"the sockets of {where}"
    elif failed.policy is NumaPolicy.LEGACY:
        where = f"{where} or have no NUMA affinity"
    return f"{failed.policy} NUMA policy: {s.after} of {s.before} {counted} are on {where}"


def _type_text(reason: str, what: str) -> Callable[[StageCount, str, Failed], str]:
    def text(s: StageCount, counted: str, _: Failed) -> str:
        return f"{reason}: {s.after} of {s.before} {counted} {what}"

    return text


def _migratable_text(s: StageCount, counted: str, failed: Failed) -> str:
    value = wants_of(failed.request.alternatives).live_migratable
    return f"live_migratable={value}: {s.after} of {s.before} {counted} are live_migratable={value}"


_SENTENCES: dict[FitStage, Callable[[StageCount, str, Failed], str]] = {
    FitStage.NUMA: _numa_text,
    FitStage.UNREQUESTED_PF: _type_text("PFs are only given when asked for", "are not PFs"),
    FitStage.UNREQUESTED_VDPA: _type_text(
        "vDPA devices are only given when asked for", "are not vDPA devices"
    ),
    FitStage.UNREQUESTED_REMOTE_MANAGED: _type_text(
        "remote-managed devices are only given when asked for", "are not remote-managed"
    ),
    FitStage.LIVE_MIGRATABLE: _migratable_text,
}
