"""Loading a workload through the services (inventory reports, groups, flavors) on SQLite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pcifleet.control.container import Services, build_services
from pcifleet.control.services.inventory import InventoryService
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.control.settings import Settings, sqlite_url
from pcifleet.domain.device import DeviceState
from pcifleet.domain.errors import AlreadyExists, InvalidWorkload
from pcifleet.sim.fleet_loader import (
    create_flavors,
    load_groups,
    register_hosts,
    template_report,
)
from pcifleet.sim.workload import Workload, load_workload

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


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(tmp_path, sqlite_url(tmp_path))
    built = build_services(settings, migrate_schema=True)
    yield built
    built.close()


def test_hosts_report_the_assignable_devices(services: Services, workload: Workload) -> None:
    inventory = InventoryService(services.sessions, services.settings)
    seen: list[tuple[int, int]] = []
    load = register_hosts(
        inventory,
        workload.fleet,
        workload.fleet.hosts[:3],
        progress=lambda d, t: seen.append((d, t)),
    )
    assert (load.hosts, load.devices) == (3, 834)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert 0 < load.slowest_s <= load.seconds
    summaries = {s.host.name: s for s in inventory.list_hosts()}
    assert sorted(summaries) == ["compute-00000", "compute-00001", "compute-00002"]
    for summary in summaries.values():
        assert summary.devices_by_state == {DeviceState.AVAILABLE: 278}
        assert summary.host.cpu_allocation_ratio == 4.0
    # reporting again (a reused database) changes nothing
    again = register_hosts(inventory, workload.fleet, workload.fleet.hosts[:1])
    assert again.hosts == 1
    assert inventory.list_hosts()[0].devices_by_state == {DeviceState.AVAILABLE: 278}


def test_groups_and_flavors(services: Services, workload: Workload) -> None:
    result = load_groups(services.groups, workload.fleet)
    assert result.created == ("gpu", "qat")
    assert create_flavors(services.flavors, workload.flavors) == len(workload.flavors)
    assert create_flavors(services.flavors, workload.flavors) == 0  # idempotent
    names = {f.name for f in services.flavors.list(LOCAL_ADMIN)}
    assert names == {f.name for f in workload.flavors}
    stored = services.flavors.get(workload.requests[0].flavor.name).flavor
    assert stored == workload.requests[0].flavor


def test_a_different_flavor_under_an_existing_name_is_refused(
    services: Services, workload: Workload
) -> None:
    flavor = workload.flavors[0]
    create_flavors(services.flavors, [flavor])
    changed = type(flavor).from_extra_specs(flavor.name, flavor.vcpus + 1, flavor.memory_mb)
    with pytest.raises(AlreadyExists):
        create_flavors(services.flavors, [changed])


def test_ram_overcommit_cannot_be_reported(workload: Workload) -> None:
    fleet = replace(
        workload.fleet, template=replace(workload.fleet.template, ram_allocation_ratio=1.5)
    )
    with pytest.raises(InvalidWorkload, match="ram_allocation_ratio"):
        template_report(fleet)
