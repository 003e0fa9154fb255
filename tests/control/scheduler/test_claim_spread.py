"""Concurrent claims spread over hosts instead of queueing on the best one.

A claim whose best host is held by another transaction (PostgreSQL ``SKIP LOCKED``) or was
changed by another process (a stale view: the compare-and-swap fails) moves on to the next
candidate in the same transaction, without counting a retry; ``subset_size`` > 1 picks among
the best hosts at random (Nova's ``host_subset_size``).
"""

from __future__ import annotations

import threading
import time

import pytest
from sched_kit import KitFactory, SlowWriter, Writer, vf_request

from pcifleet.control.scheduler.scheduler import Claimed, SchedulerOptions
from pcifleet.control.services.principal import LOCAL_ADMIN


def test_a_claim_skips_a_host_another_claim_holds_without_waiting(make_kit: KitFactory) -> None:
    first = make_kit(catalogue=False)
    if first.sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite transactions are exclusive: no other claim can hold a host")
    second = make_kit(catalogue=False)
    first.add_host("h1")
    first.add_host("h2")
    first.scheduler.load()
    second.scheduler.load()
    holding = threading.Event()
    results: dict[str, Claimed] = {}

    def slow() -> None:
        result = first.scheduler.claim(
            vf_request("00000000-0000-0000-0000-00000000000a"), SlowWriter(holding)
        )
        assert isinstance(result, Claimed)
        results["slow"] = result

    thread = threading.Thread(target=slow)
    thread.start()
    assert holding.wait(10)
    began = time.perf_counter()
    fast = second.scheduler.claim(
        vf_request("00000000-0000-0000-0000-00000000000b"), Writer(threading.Event())
    )
    waited = time.perf_counter() - began
    thread.join(10)
    assert isinstance(fast, Claimed)
    assert results["slow"].host.name == "h1"  # the best host (pack, then name)
    assert fast.host.name == "h2"  # skipped h1 while the slow claim held it
    assert fast.attempts == 1  # moving on is not a retry
    assert waited < 0.35  # the slow claim holds h1 for 0.4 s


def test_a_stale_view_moves_on_and_marks_the_host_stale(make_kit: KitFactory) -> None:
    first = make_kit(catalogue=False)
    second = make_kit(catalogue=False)
    h1 = first.add_host("h1")
    first.add_host("h2")
    first.scheduler.load()
    second.scheduler.load()
    done = first.scheduler.claim(
        vf_request("00000000-0000-0000-0000-00000000000c"), Writer(threading.Event())
    )
    assert isinstance(done, Claimed) and done.host.name == "h1"
    # the second process still believes h1 is at its old generation
    summary = second.scheduler.index.summary(h1)
    assert summary is not None and summary.generation == done.host.generation - 1
    other = second.scheduler.claim(
        vf_request("00000000-0000-0000-0000-00000000000d"), Writer(threading.Event())
    )
    assert isinstance(other, Claimed)
    assert (other.host.name, other.attempts) == ("h2", 1)
    summary = second.scheduler.index.summary(h1)
    assert summary is not None and summary.stale


@pytest.mark.parametrize(("subset", "most_hosts"), [(1, 1), (4, 4)])
def test_subset_size_picks_among_the_best_hosts(
    make_kit: KitFactory, subset: int, most_hosts: int
) -> None:
    kit = make_kit(SchedulerOptions(subset_size=subset, seed=3))
    for name in ("h1", "h2", "h3", "h4", "h5"):
        kit.add_host(name)
    hosts = {kit.instances.boot(LOCAL_ADMIN, f"vm{i}", "small").host for i in range(6)}
    # pack keeps filling one host; a subset of 4 spreads over (at most) the 4 best
    assert len(hosts) <= most_hosts
    assert len(hosts) == 1 if subset == 1 else len(hosts) > 1
