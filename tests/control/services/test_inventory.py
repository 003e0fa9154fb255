"""Inventory use cases on SQLite and PostgreSQL: registration, report diffs, heartbeats, holds."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import DeviceRow, HostRow, InstanceRow
from pcifleet.control.db.records import HostState
from pcifleet.control.db.repo import bump_generation, drop_released_vanished
from pcifleet.control.services.inventory import (
    DeviceFilter,
    InventoryReport,
    InventoryService,
    ReportResult,
)
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.errors import ConcurrentUpdate, InvalidInput, InvalidTransition, NotFound
from pcifleet.domain.numa import HugePages, NumaCell
from pcifleet.domain.tags import Tags

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
PF = "0000:3b:00.0"
GPU = "0000:af:00.0"
PHYSNET = Tags({"physical_network": "physnet1"})


class FakeClock:
    """Time under the test's control."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def pf(address: str = PF, dev_type: DeviceType = DeviceType.PF, **kw: object) -> Device:
    return Device(
        PciAddress.parse(address),
        "8086",
        "158b",
        dev_type,
        class_code="020000",
        numa_node=0,
        driver="i40e",
        netdevs=("ens1f0",),
        tags=PHYSNET,
        **kw,  # type: ignore[arg-type]
    )


def vf(index: int, parent: str = PF) -> Device:
    parent_address = PciAddress.parse(parent)
    return Device(
        parent_address.offset(16 + index),
        "8086",
        "154c",
        DeviceType.VF,
        class_code="020000",
        numa_node=0,
        parent=parent_address,
        vf_index=index,
        driver="iavf",
        tags=PHYSNET,
    )


def gpu(address: str = GPU, driver: str = "vfio-pci") -> Device:
    return Device(
        PciAddress.parse(address), "10de", "1eb8", DeviceType.PCI, "030200", 1, driver=driver
    )


CELLS = (
    NumaCell(0, 0, frozenset(range(0, 8)), 65536, (HugePages(2048, 1024, 1024),)),
    NumaCell(1, 1, frozenset(range(8, 16)), 65536),
)


def inventory(*devices: Device) -> InventoryReport:
    return InventoryReport(devices=devices, cells=CELLS)


def full_inventory() -> InventoryReport:
    return inventory(pf(), *(vf(i) for i in range(4)), gpu())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(
    sessions: sessionmaker[Session], tmp_path: Path, engine: Engine, clock: FakeClock
) -> InventoryService:
    settings = Settings(tmp_path, str(engine.url), heartbeat_timeout_s=60, claim_retries=5)
    return InventoryService(sessions, settings, clock)


def device_row(sessions: sessionmaker[Session], host_id: str, address: str) -> DeviceRow:
    with sessions() as session:
        return session.scalars(
            select(DeviceRow).where(DeviceRow.host_id == host_id, DeviceRow.address == address)
        ).one()


def hold(sessions: sessionmaker[Session], host_id: str, address: str, state: DeviceState) -> str:
    """What a claim writes: an instance row, the device held by it, the generation bumped."""
    instance_id = str(uuid.uuid4())
    with sessions.begin() as session:
        host = session.get_one(HostRow, host_id)
        bump_generation(session, host_id, host.generation)
        session.add(InstanceRow(id=instance_id, name="vm", project="p", state="active"))
        session.flush()
        session.execute(
            update(DeviceRow)
            .where(DeviceRow.host_id == host_id, DeviceRow.address == address)
            .values(state=state.value, instance_id=instance_id)
        )
    return instance_id


def report(service: InventoryService, host: str, inv: InventoryReport) -> ReportResult:
    """Report at the host's current inventory generation (as an agent that just read it)."""
    current = service.show_host(host).host.inventory_generation
    return service.report(host, current, inv)


# --- registration ------------------------------------------------------------------------


def test_register_is_idempotent_by_name(service: InventoryService) -> None:
    first = service.register_host("compute-1")
    again = service.register_host("compute-1")
    assert again.id == first.id
    assert (first.generation, first.inventory_generation) == (0, 0)
    assert first.state is HostState.UP
    assert [s.host.name for s in service.list_hosts()] == ["compute-1"]


@pytest.mark.parametrize("name", ["", "  ", " padded", "x" * 256])
def test_register_rejects_bad_names(service: InventoryService, name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        service.register_host(name)
    assert info.value.fields["field"] == "name"


# --- reports -----------------------------------------------------------------------------


def test_first_report_adds_every_device_and_cells(service: InventoryService) -> None:
    host = service.register_host("compute-1")
    result = service.report("compute-1", 0, full_inventory())
    assert (result.added, result.updated, result.removed) == (6, 0, 0)
    assert (result.generation, result.inventory_generation) == (1, 1)
    assert result.kept_vanished == ()
    detail = service.show_host(host.id)
    assert detail.host.cells == CELLS
    assert [d.device.address for d in detail.devices] == sorted(
        d.address for d in full_inventory().devices
    )
    assert {d.device.state for d in detail.devices} == {DeviceState.AVAILABLE}
    stored_vf = next(d.device for d in detail.devices if d.device.dev_type is DeviceType.VF)
    assert stored_vf == vf(0)


def test_report_with_a_stale_generation_conflicts_and_writes_nothing(
    service: InventoryService,
) -> None:
    service.register_host("compute-1")
    service.report("compute-1", 0, full_inventory())
    with pytest.raises(ConcurrentUpdate) as info:
        service.report("compute-1", 0, inventory(gpu()))
    assert info.value.code == "pcifleet.concurrent_update"
    assert info.value.status == 409
    assert info.value.fields["current"] == 1
    assert len(service.show_host("compute-1").devices) == 6


def test_report_updates_changed_facts(service: InventoryService) -> None:
    service.register_host("h")
    service.report("h", 0, full_inventory())
    changed = inventory(pf(), *(vf(i) for i in range(4)), gpu(driver="nvidia"))
    result = service.report("h", 1, changed)
    assert (result.added, result.updated, result.removed, result.unchanged) == (0, 1, 0, 5)
    [shown] = service.list_devices(DeviceFilter(host="h", vendor_id="10de"))
    assert shown.device.driver == "nvidia"


def test_enabling_sriov_changes_the_type_and_adds_vfs(service: InventoryService) -> None:
    service.register_host("h")
    service.report("h", 0, inventory(pf(dev_type=DeviceType.PCI), gpu()))
    result = service.report("h", 1, inventory(pf(), vf(0), vf(1), gpu()))
    assert (result.added, result.updated, result.removed) == (2, 1, 0)
    [head] = service.list_devices(DeviceFilter(host="h", dev_type=DeviceType.PF))
    assert head.device.address == PciAddress.parse(PF)
    assert len(service.list_devices(DeviceFilter(dev_type=DeviceType.VF))) == 2


def test_vanished_free_devices_are_removed(service: InventoryService) -> None:
    service.register_host("h")
    service.report("h", 0, full_inventory())
    result = service.report("h", 1, inventory(pf(), vf(0), gpu()))
    assert (result.added, result.removed, result.kept_vanished) == (0, 3, ())
    assert len(service.show_host("h").devices) == 3


@pytest.mark.parametrize("state", [DeviceState.CLAIMED, DeviceState.ALLOCATED])
def test_a_held_device_that_vanishes_is_kept_flagged_and_reported(
    service: InventoryService, sessions: sessionmaker[Session], clock: FakeClock, state: DeviceState
) -> None:
    host = service.register_host("h")
    service.report("h", 0, full_inventory())
    owner = hold(sessions, host.id, GPU, state)
    clock.advance(5)

    gone = service.report("h", 1, inventory(pf(), *(vf(i) for i in range(4))))
    assert gone.kept_vanished == (PciAddress.parse(GPU),)
    assert gone.removed == 0
    row = device_row(sessions, host.id, GPU)
    assert (row.vanished, row.vanished_at, row.state, row.instance_id) == (
        True,
        clock.now,
        state.value,
        owner,
    )
    [flagged] = service.list_devices(DeviceFilter(vanished=True))
    assert flagged.device.owner == owner

    still_gone = report(service, "h", inventory(pf(), *(vf(i) for i in range(4))))
    assert still_gone.kept_vanished == (PciAddress.parse(GPU),)
    assert not still_gone.changed

    back = report(service, "h", full_inventory())
    assert back.reappeared == (PciAddress.parse(GPU),)
    assert back.kept_vanished == ()
    row = device_row(sessions, host.id, GPU)
    assert (row.vanished, row.vanished_at, row.state) == (False, None, state.value)


@pytest.mark.parametrize(
    ("pf_state", "new_vf_state"),
    [
        (DeviceState.ALLOCATED, DeviceState.UNAVAILABLE),
        (DeviceState.CLAIMED, DeviceState.UNCLAIMABLE),
    ],
)
def test_a_new_vf_of_a_pf_in_use_is_blocked(
    service: InventoryService,
    sessions: sessionmaker[Session],
    pf_state: DeviceState,
    new_vf_state: DeviceState,
) -> None:
    host = service.register_host("h")
    service.report("h", 0, inventory(pf()))
    hold(sessions, host.id, PF, pf_state)
    report(service, "h", inventory(pf(), vf(0)))
    assert device_row(sessions, host.id, str(vf(0).address)).state == new_vf_state.value


def test_a_report_that_changes_nothing_keeps_generations_but_refreshes_liveness(
    service: InventoryService, clock: FakeClock
) -> None:
    service.register_host("h")
    first = service.report("h", 0, full_inventory())
    clock.advance(30)
    again = service.report("h", 1, full_inventory())
    assert not again.changed
    assert (again.generation, again.inventory_generation) == (
        first.generation,
        first.inventory_generation,
    )
    assert again.unchanged == 6
    assert service.show_host("h").host.last_heartbeat == clock.now


def test_a_report_naming_an_address_twice_is_rejected(service: InventoryService) -> None:
    service.register_host("h")
    with pytest.raises(InvalidInput) as info:
        service.report("h", 0, inventory(gpu(), gpu()))
    assert info.value.fields["rule"] == "unique"


def test_reporting_for_an_unknown_host_is_not_found(service: InventoryService) -> None:
    with pytest.raises(NotFound):
        service.report("nowhere", 0, full_inventory())


def test_labels_are_stored(service: InventoryService) -> None:
    service.register_host("h")
    labels = {PciAddress.parse(GPU): "TU104GL [Tesla T4]"}
    service.report("h", 0, InventoryReport(devices=(gpu(),), labels=labels))
    [shown] = service.list_devices()
    assert shown.label == "TU104GL [Tesla T4]"


def test_two_concurrent_reports_at_the_same_generation_exactly_one_wins(
    service: InventoryService,
) -> None:
    service.register_host("h")
    service.report("h", 0, inventory(gpu()))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(inv: InventoryReport) -> None:
        barrier.wait()
        try:
            service.report("h", 1, inv)
            outcome = "won"
        except ConcurrentUpdate:
            outcome = "conflict"
        with lock:
            outcomes.append(outcome)

    threads = [
        threading.Thread(target=run, args=(inventory(gpu(), pf(), vf(0)),)),
        threading.Thread(target=run, args=(inventory(gpu(), pf(), vf(1)),)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "won"]
    assert service.show_host("h").host.inventory_generation == 2
    assert len(service.show_host("h").devices) == 3


def test_reports_and_holds_racing_on_one_host_all_succeed(service: InventoryService) -> None:
    """Holds bump the host generation under a report's feet; the report recomputes."""
    service.register_host("h")
    service.report("h", 0, full_inventory())
    gpu_id = service.list_devices(DeviceFilter(vendor_id="10de"))[0].id
    errors: list[BaseException] = []

    def reports() -> None:
        try:
            for round_ in range(10):
                extra = (vf(0),) if round_ % 2 else ()
                report(service, "h", inventory(pf(), gpu(), *extra))
        except BaseException as error:  # collected, asserted below
            errors.append(error)

    def holds() -> None:
        try:
            for _ in range(10):
                service.reserve_device(gpu_id)
                service.unreserve_device(gpu_id)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=reports), threading.Thread(target=holds)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert service.show_device(gpu_id).device.state is DeviceState.AVAILABLE


# --- heartbeats --------------------------------------------------------------------------


def test_hosts_without_recent_heartbeats_go_down_and_come_back(
    service: InventoryService, clock: FakeClock
) -> None:
    service.register_host("quiet")
    service.register_host("chatty")
    clock.advance(45)
    service.heartbeat("chatty")
    clock.advance(30)
    assert service.mark_down_stale() == ("quiet",)
    assert service.mark_down_stale() == ()
    states = {s.host.name: s.host.state for s in service.list_hosts()}
    assert states == {"quiet": HostState.DOWN, "chatty": HostState.UP}
    assert [s.host.name for s in service.list_hosts(HostState.DOWN)] == ["quiet"]
    assert not service.show_host("quiet").host.schedulable

    back = service.heartbeat("quiet")
    assert back.state is HostState.UP
    assert back.last_heartbeat == clock.now
    assert service.mark_down_stale(clock.now + dt.timedelta(seconds=61)) == ("chatty", "quiet")


def test_disabled_hosts_are_not_schedulable(service: InventoryService) -> None:
    service.register_host("h")
    disabled = service.set_disabled("h", True, "maintenance")
    assert (disabled.disabled, disabled.disabled_reason, disabled.schedulable) == (
        True,
        "maintenance",
        False,
    )
    assert service.set_disabled("h", False).schedulable


# --- operator holds ----------------------------------------------------------------------


def _device_id(service: InventoryService, address: str) -> str:
    [found] = [d for d in service.show_host("h").devices if str(d.device.address) == address]
    return found.id


def _state(service: InventoryService, address: str) -> DeviceState:
    return service.show_device(_device_id(service, address)).device.state


def test_reserve_and_unreserve_a_device(service: InventoryService) -> None:
    service.register_host("h")
    service.report("h", 0, full_inventory())
    before = service.show_host("h").host.generation
    reserved = service.reserve_device(_device_id(service, GPU))
    assert reserved.device.state is DeviceState.RESERVED
    assert reserved.host_name == "h"
    assert service.show_host("h").host.generation == before + 1
    assert service.unreserve_device(reserved.id).device.state is DeviceState.AVAILABLE


@pytest.mark.parametrize(
    ("operation", "start", "message"),
    [
        ("reserve", DeviceState.RESERVED, "is reserved instead of available"),
        ("reserve", DeviceState.ALLOCATED, "is allocated instead of available"),
        ("unreserve", DeviceState.AVAILABLE, "is available instead of reserved"),
        ("unreserve", DeviceState.CLAIMED, "is claimed instead of reserved"),
    ],
)
def test_holds_only_from_the_right_state(
    service: InventoryService,
    sessions: sessionmaker[Session],
    operation: str,
    start: DeviceState,
    message: str,
) -> None:
    host = service.register_host("h")
    service.report("h", 0, full_inventory())
    device_id = _device_id(service, GPU)
    if start is DeviceState.RESERVED:
        service.reserve_device(device_id)
    elif start is not DeviceState.AVAILABLE:
        hold(sessions, host.id, GPU, start)
    action: Callable[[str], object] = getattr(service, f"{operation}_device")
    with pytest.raises(InvalidTransition) as info:
        action(device_id)
    assert message in str(info.value)
    assert info.value.status == 409
    assert _state(service, GPU) is start


def test_reserving_a_vf_blocks_its_pf_until_unreserved(service: InventoryService) -> None:
    service.register_host("h")
    service.report("h", 0, full_inventory())
    vf0 = str(vf(0).address)
    service.reserve_device(_device_id(service, vf0))
    assert _state(service, PF) is DeviceState.UNCLAIMABLE
    service.unreserve_device(_device_id(service, vf0))
    assert _state(service, PF) is DeviceState.AVAILABLE


def test_unreserving_a_pf_whose_vf_is_in_use_leaves_it_blocked(
    service: InventoryService, sessions: sessionmaker[Session]
) -> None:
    host = service.register_host("h")
    service.report("h", 0, full_inventory())
    service.reserve_device(_device_id(service, PF))
    hold(sessions, host.id, str(vf(2).address), DeviceState.ALLOCATED)
    assert service.unreserve_device(_device_id(service, PF)).device.state is (
        DeviceState.UNAVAILABLE
    )


def test_holds_on_unknown_devices_are_not_found(service: InventoryService) -> None:
    with pytest.raises(NotFound):
        service.reserve_device(str(uuid.uuid4()))


# --- reads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (DeviceFilter(), 7),
        (DeviceFilter(host="a"), 6),
        (DeviceFilter(dev_type=DeviceType.VF), 4),
        (DeviceFilter(state=DeviceState.RESERVED), 1),
        (DeviceFilter(vendor_id="8086", product_id="154c"), 4),
        (DeviceFilter(physical_network="physnet1"), 5),
        (DeviceFilter(physical_network="physnet2"), 0),
        (DeviceFilter(numa_node=1), 2),
        (DeviceFilter(host="b", numa_node=1), 1),
        (DeviceFilter(vanished=False), 7),
    ],
)
def test_device_filters(service: InventoryService, filters: DeviceFilter, expected: int) -> None:
    service.register_host("a")
    service.register_host("b")
    service.report("a", 0, full_inventory())
    service.report("b", 0, inventory(gpu()))
    service.reserve_device(service.list_devices(DeviceFilter(host="b"))[0].id)
    found = service.list_devices(filters)
    assert len(found) == expected
    assert all(d.host_name in ("a", "b") for d in found)


def test_device_listing_pages(service: InventoryService) -> None:
    service.register_host("a")
    service.report("a", 0, full_inventory())
    everything = service.list_devices()
    assert service.list_devices(limit=2, offset=1) == everything[1:3]


def test_host_summaries_count_devices_by_state(
    service: InventoryService, sessions: sessionmaker[Session]
) -> None:
    host = service.register_host("a")
    service.report("a", 0, full_inventory())
    hold(sessions, host.id, GPU, DeviceState.ALLOCATED)
    report(service, "a", inventory(pf(), *(vf(i) for i in range(4))))
    [summary] = service.list_hosts()
    assert dict(summary.devices_by_state) == {
        DeviceState.AVAILABLE: 5,
        DeviceState.ALLOCATED: 1,
    }
    assert (summary.device_count, summary.vanished) == (6, 1)


def test_show_unknown_host_and_device(service: InventoryService) -> None:
    with pytest.raises(NotFound):
        service.show_host("nope")
    with pytest.raises(NotFound):
        service.show_device("nope")


def test_a_vanished_device_freed_later_is_dropped_not_made_available(
    service: InventoryService, sessions: sessionmaker[Session]
) -> None:
    host = service.register_host("h")
    service.report("h", 0, full_inventory())
    hold(sessions, host.id, GPU, DeviceState.ALLOCATED)
    report(service, "h", inventory(pf(), *(vf(i) for i in range(4))))
    with sessions.begin() as session:  # what freeing the instance's devices writes
        current = session.get_one(HostRow, host.id).generation
        bump_generation(session, host.id, current)
        session.execute(
            update(DeviceRow)
            .where(DeviceRow.host_id == host.id)
            .values(state=DeviceState.AVAILABLE.value, instance_id=None)
        )
        assert drop_released_vanished(session, host.id) == 1
    assert service.list_devices(DeviceFilter(vendor_id="10de")) == []
    assert len(service.show_host("h").devices) == 5


def test_a_vf_blocked_by_its_claimed_pf_can_be_reserved_and_returns_blocked(
    service: InventoryService, sessions: sessionmaker[Session]
) -> None:
    """The domain's transition table: reserve from unclaimable; unreserve re-derives."""
    host = service.register_host("h")
    service.report("h", 0, inventory(pf()))
    hold(sessions, host.id, PF, DeviceState.CLAIMED)
    report(service, "h", inventory(pf(), vf(0)))
    vf0 = _device_id(service, str(vf(0).address))
    assert service.show_device(vf0).device.state is DeviceState.UNCLAIMABLE
    assert service.reserve_device(vf0).device.state is DeviceState.RESERVED
    assert _state(service, PF) is DeviceState.CLAIMED
    assert service.unreserve_device(vf0).device.state is DeviceState.UNCLAIMABLE
