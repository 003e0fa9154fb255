"""The candidate index and the weighers, on domain host views (no database)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sched_kit import cells, host_devices

from pcifleet.control.scheduler.hostload import HostHead
from pcifleet.control.scheduler.index import CandidateIndex
from pcifleet.control.scheduler.outcomes import DOWN, RESOURCES
from pcifleet.control.scheduler.weighers import Strategy, parse_strategy, weigher_for
from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import InvalidInput
from pcifleet.domain.fit import apply, fit
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.placement import InstanceRequest, Placement
from pcifleet.domain.request import DeviceMatch, DeviceRequest, Requester, RequesterKind

GPU = DeviceRequest(
    1, (DeviceMatch.of(vendor_id="10de"),), Requester(RequesterKind.GROUP, "gpu"), request_id="g"
)
VF2 = DeviceRequest(
    2,
    (DeviceMatch.of(dev_type=DeviceType.VF, physical_network="physnet2"),),
    Requester(RequesterKind.GROUP, "vf2"),
    request_id="v",
)


def view(name: str, *, devices: bool = True, memory_mb: int = 16384) -> HostState:
    return HostState.build(
        name,
        cells(memory_mb=memory_mb),
        host_devices() if devices else [],
        cpu_allocation_ratio=1.0,
    )


def index_of(
    *views: HostState, strategy: Strategy = Strategy.PACK, down: str = ""
) -> CandidateIndex:
    index = CandidateIndex(weigher_for(strategy))
    for v in views:
        index.update(HostHead(v.name, v.name, 0, v.name != down), v)
    return index


def names(index: CandidateIndex, request: InstanceRequest) -> list[str]:
    return [summary.name for summary, _ in index.candidates(index.prepare(request))]


def claim(index: CandidateIndex, v: HostState, request: InstanceRequest, gen: int) -> HostState:
    placement = fit(v, replace(request, instance_id=f"vm-{gen}"))
    assert isinstance(placement, Placement)
    after = apply(v, placement)
    index.update(HostHead(v.name, v.name, gen, True), after)
    return after


def test_hosts_without_enough_matching_devices_are_not_candidates() -> None:
    index = index_of(view("a", devices=False), view("b"), view("c"))
    assert names(index, InstanceRequest(2, 512, device_requests=(GPU,))) == ["b", "c"]
    assert names(index, InstanceRequest(2, 512, device_requests=(GPU, VF2))) == ["b", "c"]


def test_guests_without_devices_go_to_hosts_without_devices_first() -> None:
    index = index_of(view("b"), view("a", devices=False), view("c"))
    assert names(index, InstanceRequest(2, 512)) == ["a", "b", "c"]


def test_down_hosts_and_hosts_without_capacity_are_skipped_with_a_reason() -> None:
    index = index_of(view("a"), view("b", memory_mb=256), view("c"), down="a")
    request = InstanceRequest(2, 1024, device_requests=(GPU,))
    check = index.prepare(request)
    assert names(index, request) == ["c"]
    rejected = {s.name: check.reject(s) for s, _ in index.ordered(True)}
    assert rejected["a"] is not None and rejected["a"].stage == DOWN
    assert rejected["b"] is not None and rejected["b"].stage == RESOURCES
    assert "MB memory free" in rejected["b"].message
    assert rejected["c"] is None


def test_pack_stacks_device_guests_and_spread_spreads_them() -> None:
    request = InstanceRequest(2, 512, device_requests=(VF2,))
    for strategy, expected in ((Strategy.PACK, ["b", "a"]), (Strategy.SPREAD, ["a", "b"])):
        a, b = view("a"), view("b")
        index = index_of(a, b, strategy=strategy)
        assert names(index, request) == ["a", "b"]  # a tie: by name
        claim(index, b, request, 1)
        assert names(index, request) == expected


def test_counts_follow_claims_until_the_host_is_full() -> None:
    index = index_of(view("a"))
    v = view("a")
    request = InstanceRequest(1, 256, device_requests=(GPU,))
    v = claim(index, v, request, 1)
    assert names(index, request) == []
    summary = index.summary("a")
    assert summary is not None and summary.generation == 1
    assert index.cached_view("a", 1) is v
    assert index.cached_view("a", 0) is None


def test_an_older_state_never_replaces_a_newer_one() -> None:
    index = index_of(view("a"))
    v = claim(index, view("a"), InstanceRequest(1, 256, device_requests=(GPU,)), 5)
    index.update(HostHead("a", "a", 3, True), view("a"))
    assert index.cached_view("a", 5) is v


def test_the_view_cache_is_bounded() -> None:
    index = CandidateIndex(weigher_for("pack"), cache_size=2)
    for name in "abcd":
        index.update(HostHead(name, name, 0, True), view(name))
    assert index.cache_len() == 2
    assert len(index) == 4
    assert index.cached_view("a", 0) is None and index.cached_view("d", 0) is not None


def test_forget_removes_a_host_everywhere() -> None:
    index = index_of(view("a"), view("b"))
    index.forget("a")
    assert names(index, InstanceRequest(1, 256)) == ["b"]


@pytest.mark.parametrize("text", ["pack", " Spread "])
def test_strategies_parse(text: str) -> None:
    assert parse_strategy(text) in set(Strategy)


def test_unknown_strategy_names_the_field() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_strategy("random")
    assert info.value.fields["field"] == "weigher"
