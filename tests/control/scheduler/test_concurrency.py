"""Claims from many threads and two schedulers ("processes") never share a device.

Runs on SQLite (transactions serialized by ``BEGIN IMMEDIATE``) and on PostgreSQL (the host
generation compare-and-swap serializes claims per host; losers retry).
"""

from __future__ import annotations

import random
import threading
from collections import Counter

from sched_kit import Kit, KitFactory, SlowWriter, Writer, vf_request
from sqlalchemy import select

from pcifleet.control.db.models import DeviceRow, InstanceRow
from pcifleet.control.scheduler.codec import LIVE_STATES, InstanceState, placement_from_json
from pcifleet.control.scheduler.scheduler import Claimed, SchedulerOptions
from pcifleet.control.services.instances import InstanceService
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.domain.device import DeviceState, DeviceType
from pcifleet.domain.errors import ConcurrentUpdate

PATIENT = SchedulerOptions(claim_retries=50)


def check_invariants(kit: Kit) -> int:
    """Every held device is in its owner's placement, and the reverse; PF/VF exclusive."""
    with kit.sessions() as session:
        devices = session.execute(
            select(
                DeviceRow.host_id,
                DeviceRow.address,
                DeviceRow.dev_type,
                DeviceRow.parent_address,
                DeviceRow.state,
                DeviceRow.instance_id,
            )
        ).all()
        instances = session.execute(
            select(InstanceRow.id, InstanceRow.host_id, InstanceRow.placement).where(
                InstanceRow.state.in_(LIVE_STATES)
            )
        ).all()
    owner = {(h, a): o for h, a, _, _, _, o in devices}
    placed: Counter[tuple[str, str]] = Counter()
    for instance_id, host_id, raw in instances:
        for address in placement_from_json(instance_id, raw).all_devices:
            placed[(host_id, str(address))] += 1
            assert owner[(host_id, str(address))] == instance_id
    assert all(n == 1 for n in placed.values())
    held = {(h, a) for h, a, _, _, s, _ in devices if s in ("claimed", "allocated")}
    assert held == set(placed)
    for h, a, dev_type, parent, _, _ in devices:
        if dev_type == DeviceType.VF.value and (h, a) in held:
            assert (h, parent) not in held
    return len(instances)


def test_many_threads_and_two_schedulers_never_share_a_device(make_kit: KitFactory) -> None:
    kit = make_kit(PATIENT)
    other = make_kit(PATIENT, catalogue=False)  # a second controller process: its own index
    for name in ("h1", "h2", "h3"):
        kit.add_host(name, cpus=32, memory_mb=65536)
    services = [kit.instances, other.instances]
    errors: list[BaseException] = []
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def run(worker: int) -> None:
        rng = random.Random(worker)
        service: InstanceService = services[worker % 2]
        for i in range(8):
            flavor = rng.choice(["gpu", "two-vf", "pf", "small"])
            try:
                vm = service.boot(LOCAL_ADMIN, f"vm-{worker}-{i}", flavor)
                with lock:
                    outcomes[str(vm.state)] += 1
                if vm.state is InstanceState.ACTIVE and rng.random() < 0.3:
                    service.delete(LOCAL_ADMIN, vm.id)
            except ConcurrentUpdate:
                with lock:
                    outcomes["conflict"] += 1
            except BaseException as exc:  # surface anything else in the main thread
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert outcomes["active"] >= 20
    live = check_invariants(kit)
    assert live == outcomes["active"] - kit.instances.count(InstanceState.DELETED)
    # three hosts hold three GPUs and three physnet1 PFs: never more in use
    with kit.sessions() as session:
        held = Counter(
            session.scalars(
                select(DeviceRow.dev_type).where(DeviceRow.state == DeviceState.ALLOCATED.value)
            )
        )
    assert held["type-PCI"] <= 3 and held["type-PF"] <= 3


def test_a_concurrent_claim_on_the_same_host_is_retried_and_gets_other_devices(
    make_kit: KitFactory,
) -> None:
    first = make_kit(catalogue=False)
    second = make_kit(catalogue=False)
    first.add_host("h1")
    first.scheduler.load()
    second.scheduler.load()
    claimed = threading.Event()
    results: dict[str, Claimed] = {}

    def slow() -> None:
        result = first.scheduler.claim(
            vf_request("00000000-0000-0000-0000-000000000001"), SlowWriter(claimed)
        )
        assert isinstance(result, Claimed)
        results["slow"] = result

    thread = threading.Thread(target=slow)
    thread.start()
    assert claimed.wait(10)
    fast = second.scheduler.claim(
        vf_request("00000000-0000-0000-0000-000000000002"), Writer(threading.Event())
    )
    thread.join(10)
    assert isinstance(fast, Claimed)
    slow_result = results["slow"]
    assert set(fast.placement.all_devices).isdisjoint(slow_result.placement.all_devices)
    assert fast.host.generation == slow_result.host.generation + 1
    backend = first.sessions.kw["bind"].dialect.name
    # PostgreSQL: the second claim read the old generation, lost the CAS and retried;
    # SQLite: BEGIN IMMEDIATE made it wait before reading, so it never conflicted
    assert fast.attempts == (2 if backend == "postgresql" else 1)
    with first.sessions() as session:
        held = session.scalars(
            select(DeviceRow.address).where(DeviceRow.state == DeviceState.ALLOCATED.value)
        ).all()
    assert sorted(held) == sorted(
        str(a) for a in (*fast.placement.all_devices, *slow_result.placement.all_devices)
    )
