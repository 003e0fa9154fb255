"""Another process's claims and frees are replayed on a cached host view, never reloaded.

Two schedulers share one database (two controller processes). After every operation of a
random sequence — boots and deletes through either one, and now and then an inventory report
(a writer that is not a claim or a free) — each scheduler catches up without reloading, and
every view it now holds at the database's generation equals the host freshly loaded from the
rows. Claims and frees must have been replayed; a report must have been left to a reload.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from sched_kit import DEFAULT_OPTIONS, Kit, KitFactory, cells, host_devices
from sqlalchemy import func, select

from pcifleet.control.db.models import DeviceRow, HostRow, InstanceRow
from pcifleet.control.scheduler.codec import LIVE_STATES
from pcifleet.control.scheduler.delta import Event, advance
from pcifleet.control.scheduler.hostload import load_host, read_heads
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.domain.hoststate import HostState

FLAVORS = ("small", "gpu", "two-vf", "pf")


def _comparable(view: HostState) -> tuple[object, ...]:
    """Everything a fit reads (pool order and member order are not meaningful)."""
    pools = sorted((str(p.key), p.count, tuple(sorted(map(str, p.members)))) for p in view.pools)
    return (
        dict(view.devices),
        dict(view.placements),
        view.usage,
        view.totals,
        view.floating_vcpus,
        view.floating_memory_mb,
        pools,
    )


def _caught_up(kit: Kit) -> dict[str, bool]:
    """Catch ``kit``'s index up without reloading; per host: is its view current now?"""
    with kit.sessions.begin() as session:
        kit.scheduler.index.catch_up_in(session, reload=False)
        heads = read_heads(session)
        current = {}
        for head in heads:
            view = kit.scheduler.index.cached_view(head.id, head.generation)
            current[head.id] = view is not None
            if view is not None:
                assert _comparable(view) == _comparable(load_host(session, head).view)
    return current


def _heads(kit: Kit) -> dict[str, int]:
    with kit.sessions() as session:
        return {head.id: head.generation for head in read_heads(session)}


def _report(kit: Kit, host_id: str) -> None:
    """An inventory report that changes the host: one VF per NIC more, or fewer."""
    with kit.sessions() as session:
        name, generation = session.execute(
            select(HostRow.name, HostRow.inventory_generation).where(HostRow.id == host_id)
        ).one()
        rows = session.scalar(
            select(func.count()).where(DeviceRow.host_id == host_id, DeviceRow.vanished.is_(False))
        )
    vfs = 5 if rows == len(host_devices(4)) else 4
    kit.inventory.report(name, generation, InventoryReport(host_devices(vfs), cells()))


def _live(kit: Kit) -> list[str]:
    with kit.sessions() as session:
        return sorted(
            session.scalars(select(InstanceRow.id).where(InstanceRow.state.in_(LIVE_STATES)))
        )


def _step(rng: random.Random, kits: tuple[Kit, Kit], step: int) -> bool:
    """One random operation through a random kit; True when it was a claim or a free."""
    kit = rng.choice(kits)
    roll = rng.random()
    live = _live(kit)
    if roll < 0.1:
        _report(kit, rng.choice(sorted(_heads(kit))))
        return False
    if roll < 0.4 and live:
        kit.instances.delete(LOCAL_ADMIN, rng.choice(live))
        return True
    kit.instances.boot(LOCAL_ADMIN, f"vm{step}", rng.choice(FLAVORS))
    return True


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replayed_views_equal_freshly_loaded_views(make_kit: KitFactory, seed: int) -> None:
    first = make_kit()
    second = make_kit(catalogue=False)
    for name in ("h1", "h2", "h3"):
        first.add_host(name)
    kits = (first, second)
    for kit in kits:
        kit.scheduler.load()
    rng = random.Random(seed)
    replayed = reports = 0
    for step in range(40):
        before = _heads(first)
        event = _step(rng, kits, step)
        moved = {h for h, g in _heads(first).items() if before.get(h) != g}
        for kit in kits:
            current = _caught_up(kit)
            if event:
                # a claim or a free moved one host by one: every process follows by replay
                assert all(current[h] for h in moved)
                replayed += len(moved)
            else:  # not a claim or a free: never replayed, the host waits for a reload
                assert not any(current[h] for h in moved)
                reports += len(moved)
            if not all(current.values()):  # a report: only a reload catches that up
                kit.scheduler.load()
    assert replayed > 20
    assert reports > 0


def test_a_gap_in_the_events_is_not_replayed(kit: Kit) -> None:
    host_id = kit.add_host("h1")
    kit.scheduler.load()
    vm = kit.instances.boot(LOCAL_ADMIN, "vm1", "gpu")
    with kit.sessions() as session:
        head = next(h for h in read_heads(session) if h.id == host_id)
        view = load_host(session, head).view
        raw = session.scalar(select(InstanceRow.placement).where(InstanceRow.id == vm.id))
    claim = Event(vm.id, head.generation, "active", raw)
    assert advance(view, head.generation, head.generation, []) is view
    assert advance(view, head.generation - 2, head.generation, [claim]) is None  # a gap
    deleted = Event(vm.id, head.generation + 1, "deleted", None)
    after = advance(view, head.generation, head.generation + 1, [deleted])
    assert after is not None and vm.id not in after.placements
    unknown = Event(vm.id, head.generation + 1, "error", raw)
    assert advance(view, head.generation, head.generation + 1, [unknown]) is None
    again = Event(vm.id, head.generation + 1, "active", raw)  # already placed: refused
    assert advance(view, head.generation, head.generation + 1, [again]) is None


def test_a_stale_claim_candidate_is_replayed_in_the_claim(make_kit: KitFactory) -> None:
    first = make_kit(catalogue=True)
    second = make_kit(catalogue=False)
    host_id = first.add_host("h1")
    for kit in (first, second):
        kit.scheduler.load()
    first.instances.boot(LOCAL_ADMIN, "vm1", "gpu")
    # the second process has not caught up: its claim finds the host moved and replays it
    vm = second.instances.boot(LOCAL_ADMIN, "vm2", "small")
    assert vm.state == "active"
    generation = _heads(first)[host_id]
    assert second.scheduler.index.cached_view(host_id, generation) is not None


def test_a_followed_index_catches_up_on_its_beat_not_in_requests(
    make_kit: KitFactory,
) -> None:
    """A serving process calls ``follow`` on a beat; its requests then skip the periodic
    catch-up (even with it due at every request here) and only the beat moves the index."""
    due = replace(DEFAULT_OPTIONS, refresh_interval_s=0.0)
    first = make_kit(due)
    second = make_kit(due, catalogue=False)
    gpu_host = first.add_host("h1")
    other = first.add_host("h2")
    for kit in (first, second):
        kit.scheduler.load()
    assert second.scheduler.follow() == 0  # nothing moved since the load
    first.instances.boot(LOCAL_ADMIN, "vm1", "gpu")
    moved = _heads(first)
    assert second.scheduler.index.cached_view(gpu_host, moved[gpu_host]) is None
    # a request of the followed process: its claim lands, the other process's boot stays
    # unseen (no catch-up in the request)
    vm = second.instances.boot(LOCAL_ADMIN, "vm2", "small")
    assert vm.state == "active"
    assert second.scheduler.index.cached_view(gpu_host, moved[gpu_host]) is None
    # the beat: replayed, not reloaded
    assert second.scheduler.follow() >= 1
    now = _heads(first)
    for host_id in (gpu_host, other):
        assert second.scheduler.index.cached_view(host_id, now[host_id]) is not None
