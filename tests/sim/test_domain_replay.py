"""The domain-level replay of ``nova-100`` against Nova's decisions (fit + apply, no database)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidTransition
from pcifleet.sim.domain_replay import (
    NovaHostJudge,
    initial_host,
    nova_placement,
    placement_of,
    replay_first_fit,
    replay_lockstep,
)
from pcifleet.sim.nova_compare import Difference, Outcome, classify, compare
from pcifleet.sim.workload import (
    DECISIONS_FILE,
    NovaDecision,
    Workload,
    load_decisions,
    load_workload,
)

WORKLOADS = Path(
    os.environ.get(
        "PCIFLEET_WORKLOADS",
        str(Path(__file__).resolve().parents[3] / "shared" / "workloads"),
    )
)
NOVA_100 = WORKLOADS / "nova-100"

pytestmark = pytest.mark.skipif(not NOVA_100.is_dir(), reason=f"workloads not found at {WORKLOADS}")


@pytest.fixture(scope="module")
def workload() -> Workload:
    return load_workload(NOVA_100)


@pytest.fixture(scope="module")
def decisions() -> dict[int, NovaDecision]:
    return {d.index: d for d in load_decisions(NOVA_100 / DECISIONS_FILE)}


def test_first_fit_places_as_many_as_nova(
    workload: Workload, decisions: dict[int, NovaDecision]
) -> None:
    calls: list[int] = []
    outcomes = replay_first_fit(
        workload.fleet,
        workload.requests,
        decisions=decisions,
        progress=lambda d, t: calls.append(d),
    )
    assert calls == list(range(1, 501))
    assert sum(o.placed for o in outcomes) == sum(d.placed for d in decisions.values()) == 500
    comparison = compare(
        outcomes, list(decisions.values()), workload.requests, initial_host(workload.fleet).devices
    )
    assert comparison.total == 500
    assert comparison.same_devices <= comparison.same_cell <= comparison.same_host <= 500
    # the first requests meet empty hosts: same host and cell as Nova
    assert all(o.host == decisions[o.index].host for o in outcomes[:20])
    # every device is used once at most per host
    used = Counter((o.host, a) for o in outcomes for a in o.devices)
    assert max(used.values()) == 1


def test_lockstep_agrees_with_novas_hosts_and_finds_nova_legal(
    workload: Workload, decisions: dict[int, NovaDecision]
) -> None:
    steps = replay_lockstep(workload.fleet, workload.requests, decisions)
    assert len(steps) == 500
    assert all(not s.nova_illegal for s in steps)
    on_host = [s.on_nova_host for s in steps if s.on_nova_host is not None]
    assert all(o.placed for o in on_host)  # pcifleet accepts every host Nova chose
    assert all(s.ours.host == decisions[s.index].host for s in steps)  # and picks it first
    kinds = Counter(classify(o, decisions[o.index]) for o in on_host)
    assert kinds[Difference.OTHER_HOST] == 0
    # VFs differ by number only (lowest free address first vs Nova's order); most cells agree
    assert kinds[Difference.OTHER_CELL] < 50


def test_nova_placement_splits_devices_over_requests(
    workload: Workload, decisions: dict[int, NovaDecision]
) -> None:
    boot = workload.requests[0]
    placement = nova_placement(boot, decisions[0])
    assert placement.devices == (
        (PciAddress.parse("0000:1a:09.6"),),
        (PciAddress.parse("0000:1a:09.7"),),
    )
    assert placement.host_cells == (0,)
    assert placement.cells[0].vcpus == boot.flavor.vcpus


def test_judge_explains_refusals_of_novas_host_and_rechecks_devices(
    workload: Workload, decisions: dict[int, NovaDecision]
) -> None:
    judge = NovaHostJudge(workload.fleet, decisions)
    boot = workload.requests[0]
    nova = decisions[0]
    # placed like Nova: nothing to explain
    same = judge.judge(boot, Outcome(0, True, nova.host, (0,), nova.devices))
    assert same.nova_host_verdict == ""
    # the same devices again on the same host: handed out twice
    again = workload.requests[1]
    with pytest.raises(InvalidTransition):
        judge.judge(again, Outcome(1, True, nova.host, (0,), nova.devices[:1]))


def test_judge_gives_the_fits_verdict_on_novas_host(
    workload: Workload, decisions: dict[int, NovaDecision]
) -> None:
    on_host_0 = [r for r in workload.requests if decisions[r.index].host == 0]
    last = workload.requests[-1]
    pretend = {**decisions, last.index: NovaDecision(last.index, True, 100, 0, 0, ())}
    judge = NovaHostJudge(workload.fleet, pretend)
    for boot in on_host_0:  # Nova filled host 0 (both cells' vCPUs)
        nova = decisions[boot.index]
        judge.judge(boot, Outcome(boot.index, True, 0, (nova.numa_cell or 0,), nova.devices))
    verdict = judge.judge(last, Outcome(last.index, True, 7, (0,), ())).nova_host_verdict
    assert verdict.startswith("resources: host has 0 shared vCPUs free")


def test_placement_of_without_numa_cell_floats(workload: Workload) -> None:
    boot = workload.requests[0]
    placement = placement_of(boot, None, ())
    assert placement.cells == ()
    assert placement.devices == ((), ())
