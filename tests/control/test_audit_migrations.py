"""The audit and live migration (SQLite and PostgreSQL): a guest in flight holds devices on
its destination too, which is no violation; destination devices still held for a migration
that is no longer in flight are reported with their own code."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from pcifleet.control.audit import (
    Code,
    DeviceFacts,
    HostFacts,
    InstanceFacts,
    MigrationFacts,
    audit_database,
    audit_host,
)
from pcifleet.control.container import Services, build_services
from pcifleet.control.db.models import MigrationRow
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.instances import InstanceRecord
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.request import DeviceMatch
from pcifleet.domain.tags import Tags

GPU = PciAddress.parse("0000:af:00.0")
OTHER = PciAddress.parse("0000:b0:00.0")


def gpu(address: PciAddress) -> Device:
    lm = Tags({"live_migratable": "true"})
    return Device(address, "10de", "1eb8", DeviceType.PCI, "030200", 0, tags=lm)


@pytest.fixture
def services(engine: Engine, tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(tmp_path, str(engine.url)), engine=engine)
    cell = NumaCell(0, 0, frozenset(range(8)), 16384)
    for host in ("h1", "h2"):
        built.inventory.register_host(host)
        built.inventory.report(host, 0, InventoryReport([gpu(GPU)], [cell]))
    lm = DeviceMatch.of("10de", "1eb8", live_migratable="true")
    built.groups.create(LOCAL_ADMIN, DeviceGroup("gpu-lm", (lm,)))
    built.flavors.create(
        LOCAL_ADMIN, parse_flavor("lm", 2, 1024, {"pci_passthrough:alias": "gpu-lm:1"})
    )
    yield built


def migrating(services: Services) -> InstanceRecord:
    vm = services.instances.boot(LOCAL_ADMIN, "vm", "lm")
    assert vm.placement is not None, vm.fault
    assert services.migrations.migrate(LOCAL_ADMIN, vm.id).migration is not None
    return vm


def codes(services: Services) -> set[Code]:
    return {v.code for v in audit_database(services.engine).violations}


def test_a_migration_in_flight_is_clean_and_so_is_its_end(services: Services) -> None:
    vm = migrating(services)
    report = audit_database(services.engine)
    assert report.clean, report.violations
    assert report.held == 2  # the source GPU and the destination GPU
    services.migrations.complete(LOCAL_ADMIN, vm.id)
    assert codes(services) == set()
    migrating_again = services.migrations.migrate(LOCAL_ADMIN, vm.id)
    assert migrating_again.migration is not None and codes(services) == set()
    services.migrations.abort(LOCAL_ADMIN, vm.id, "failed")
    assert codes(services) == set()


@pytest.mark.parametrize("state", ["aborted", "completed"])
def test_destination_devices_held_for_a_closed_migration_are_reported(
    services: Services, state: str
) -> None:
    vm = migrating(services)
    with services.sessions.begin() as session:  # closed without freeing the destination
        session.execute(update(MigrationRow).values(state=state))
    report = audit_database(services.engine)
    found = {v.code: v for v in report.violations}
    assert set(found) == {Code.HELD_FOR_CLOSED_MIGRATION, Code.POOL_COUNT}
    leftover = found[Code.HELD_FOR_CLOSED_MIGRATION]
    assert leftover.host != vm.host and leftover.subject == str(GPU)
    assert f"which is {state}, no longer in flight" in leftover.message


HOST = HostFacts("h2-id", "h2", 4, 1)
GUEST = InstanceFacts("vm", "vm", "h1-id", "active", (GPU,))


def held(address: PciAddress, owner: str | None = "vm") -> DeviceFacts:
    state = DeviceState.ALLOCATED if owner else DeviceState.AVAILABLE
    return DeviceFacts(address, DeviceType.PCI, None, state, owner, False, "gpu")


@pytest.mark.parametrize(
    ("migration_state", "devices", "expected"),
    [
        ("migrating", [held(GPU)], []),
        ("migrating", [held(GPU), held(OTHER)], [Code.NOT_IN_PLACEMENT, Code.POOL_COUNT]),
        ("migrating", [held(GPU, None)], [Code.INSTANCE_DEVICE_NOT_HELD, Code.POOL_COUNT]),
        ("aborted", [held(GPU)], [Code.HELD_FOR_CLOSED_MIGRATION, Code.POOL_COUNT]),
        ("completed", [held(GPU)], [Code.HELD_FOR_CLOSED_MIGRATION, Code.POOL_COUNT]),
        ("aborted", [held(GPU, None)], []),
    ],
)
def test_the_destination_host_checks(
    migration_state: str, devices: list[DeviceFacts], expected: list[Code]
) -> None:
    migration = MigrationFacts("m", "vm", HOST.id, migration_state, (GPU,))
    found = audit_host(HOST, devices, {"vm": GUEST}, [], [migration])
    assert [v.code for v in found] == expected


def test_without_the_migration_the_device_is_on_another_host() -> None:
    found = audit_host(HOST, [held(GPU)], {"vm": GUEST}, [])
    assert [v.code for v in found] == [Code.OWNER_ON_OTHER_HOST, Code.POOL_COUNT]
