"""The domain-level replay of ``nova-100`` against Nova's decisions (fit + apply, no database)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.sim.domain_replay import (
    initial_host,
    nova_placement,
    replay_first_fit,
    replay_lockstep,
)
from pcifleet.sim.nova_compare import Difference, classify, compare
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
