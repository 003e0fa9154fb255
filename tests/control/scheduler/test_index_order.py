"""The candidate scan's shortcuts agree with the full checks, and the per-process order.

- ``RequestFilter.passes`` (the scan's boolean) says exactly what ``reject(...) is None`` says,
  for any host summary and request (hypothesis);
- once another process's claims are replayed, equally weighted hosts are ordered by a
  permutation of the process's salt (different processes open different hosts), hosts the
  other process claimed on lately count as foreign, and a lone process keeps the name order.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from sched_kit import cells, host_devices

from pcifleet.control.scheduler.hostload import HostHead
from pcifleet.control.scheduler.index import CandidateIndex, HostSummary, RequestFilter
from pcifleet.control.scheduler.weighers import Strategy, weigher_for
from pcifleet.domain.device import DeviceType
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.placement import CpuPolicy, InstanceRequest
from pcifleet.domain.request import DeviceMatch, DeviceRequest, Requester, RequesterKind
from pcifleet.domain.state import Operation

_REQUESTS = (
    DeviceRequest(1, (DeviceMatch(vendor_id="10de"),), Requester(RequesterKind.GROUP, "gpu")),
    DeviceRequest(2, (DeviceMatch(dev_type=DeviceType.VF),), Requester(RequesterKind.GROUP, "vf")),
)
_KEYS = frozenset({0, 1, 2})

summaries = st.builds(
    HostSummary,
    id=st.just("h"),
    name=st.just("h"),
    generation=st.just(1),
    schedulable=st.booleans(),
    free=st.lists(st.tuples(st.integers(0, 4), st.integers(1, 3)), max_size=4).map(tuple),
    free_devices=st.just(0),
    free_vcpus=st.integers(-2, 8),
    free_pinnable=st.integers(-2, 8),
    free_memory_mb=st.integers(-512, 4096),
    cells=st.integers(1, 2),
    stale=st.booleans(),
)
requests = st.builds(
    InstanceRequest,
    vcpus=st.integers(1, 6),
    memory_mb=st.integers(256, 4096),
    numa_nodes=st.one_of(st.none(), st.integers(1, 3)),
    cpu_policy=st.sampled_from(CpuPolicy),
    hugepage_size_kb=st.one_of(st.none(), st.just(2048)),
    device_requests=st.lists(st.sampled_from(_REQUESTS), max_size=2).map(tuple),
)
usable_sets = st.lists(st.frozensets(st.integers(0, 4)), min_size=2, max_size=2)


@given(summaries, requests, usable_sets)
def test_passes_agrees_with_reject(
    host: HostSummary, request: InstanceRequest, usable: list[frozenset[int]]
) -> None:
    labels = tuple(f"request {i}" for i in range(len(request.device_requests)))
    check = RequestFilter(request, tuple(usable[: len(request.device_requests)]), labels)
    assert check.passes(host) == (check.reject(host) is None)


def _index(names: list[str], salt: str | None) -> CandidateIndex:
    index = CandidateIndex(weigher_for(Strategy.PACK))
    view = HostState.build("x", cells(), host_devices())
    for name in names:
        index.update(HostHead(name, name, 1, True), view)
    if salt is not None:
        index.use_affinity(salt)
    return index


def _order(index: CandidateIndex) -> list[str]:
    return [summary.name for summary, _ in index.ordered(True)]


def test_a_lone_process_orders_equal_hosts_by_name() -> None:
    names = [f"h{i:02d}" for i in range(20)]
    assert _order(_index(names, None)) == names


def test_each_process_has_its_own_stable_order_of_equal_hosts() -> None:
    names = [f"h{i:02d}" for i in range(20)]
    first, again, other = _index(names, "1"), _index(names, "1"), _index(names, "2")
    assert sorted(_order(first)) == names
    assert _order(first) == _order(again)
    assert _order(first) != _order(other)


def test_weights_still_come_before_the_process_order() -> None:
    names = [f"h{i:02d}" for i in range(10)]
    index = _index(names, "7")
    view = HostState.build("x", cells(), host_devices())
    fuller = view.transition(next(iter(view.devices)), Operation.ALLOCATE, "vm")
    index.update(HostHead("h05", "h05", 2, True), fuller)
    assert _order(index)[0] == "h05"  # pack: the host with fewer free devices first


def test_a_host_is_foreign_for_a_while_after_another_process_changed_it() -> None:
    now = [100.0]
    index = CandidateIndex(weigher_for(Strategy.PACK), clock=lambda: now[0], foreign_s=2.0)
    assert not index.is_foreign("h1")
    index.note_foreign("h1")
    assert index.is_foreign("h1")
    now[0] += 2.5
    assert not index.is_foreign("h1")
