"""Live migration on SQLite and PostgreSQL: plan, atomic destination claim, complete, abort,
refusals, NUMA policy on the destination, and a boot racing the destination claim."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.container import Services, build_services
from pcifleet.control.db.models import DeviceRow, HostRow, InstanceRow, MigrationRow
from pcifleet.control.scheduler.codec import InstanceState
from pcifleet.control.scheduler.scheduler import Scheduler
from pcifleet.control.services.flavors import FlavorService, parse_flavor
from pcifleet.control.services.groups import GroupService
from pcifleet.control.services.instances import InstanceRecord, InstanceService
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.migrations import MigrationService, MigrationState
from pcifleet.control.services.networks import Nic
from pcifleet.control.services.principal import LOCAL_ADMIN, Principal, Role
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.errors import (
    Forbidden,
    InvalidInput,
    MigrationRefused,
    MigrationStateError,
    NoValidHost,
)
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.migration import Action
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.request import DeviceMatch
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import VnicType
from pcifleet.network.segments import NetworkType, SegmentSpec

PF = PciAddress.parse("0000:3b:00.0")
GPU = PciAddress.parse("0000:af:00.0")
VLAN = SegmentSpec(NetworkType.VLAN, "physnet1")
Devices = dict[tuple[str, str], tuple[str, str | None]]


def devices(vf_node: int = 0, vfs: int = 2) -> list[Device]:
    nic = Tags({"physical_network": "physnet1"})
    pf = Device(PF, "8086", "1572", DeviceType.PF, "020000", vf_node, tags=nic)
    found = [
        Device(PF.offset(16 + i), "8086", "154c", DeviceType.VF, "020000", vf_node, PF, i, tags=nic)
        for i in range(vfs)
    ]
    gpu = Device(
        GPU, "10de", "1eb8", DeviceType.PCI, "030200", 0, tags=Tags({"live_migratable": "true"})
    )
    return [pf, *found, gpu]


def cells(memory: tuple[int, int] = (8192, 8192)) -> list[NumaCell]:
    return [NumaCell(i, 0, frozenset(range(4 * i, 4 * i + 4)), m) for i, m in enumerate(memory)]


@pytest.fixture
def services(engine: Engine, tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(tmp_path, str(engine.url)), engine=engine)
    for host in ("h1", "h2"):
        built.inventory.register_host(host)
        built.inventory.report(host, 0, InventoryReport(devices(), cells()))
    gpu = DeviceMatch.of("10de", "1eb8")
    built.groups.create(LOCAL_ADMIN, DeviceGroup("gpu", (gpu,)))
    lm = DeviceMatch.of("10de", "1eb8", live_migratable="true")
    built.groups.create(LOCAL_ADMIN, DeviceGroup("gpu-lm", (lm,)))
    flavors = (
        ("small", {}),
        ("lm", {"pci_passthrough:alias": "gpu-lm:1"}),
        ("nolm", {"pci_passthrough:alias": "gpu:1"}),
        ("numa", {"hw:numa_nodes": "1", "hw:pci_numa_affinity_policy": "required"}),
    )
    for name, specs in flavors:
        built.flavors.create(LOCAL_ADMIN, parse_flavor(name, 2, 1024, specs))
    built.networks.create_network(LOCAL_ADMIN, "n", [VLAN])
    yield built


def migrations(services: Services) -> MigrationService:
    return MigrationService(services.sessions, services.instances.scheduler, services.networks)


def boot(services: Services, flavor: str, *vnics: VnicType) -> InstanceRecord:
    nics = [Nic(net="n", vnic_type=v) for v in vnics]
    ports = services.networks.resolve_nics(LOCAL_ADMIN, nics).ports if nics else ()
    vm = services.instances.boot(LOCAL_ADMIN, "vm", flavor, ports=ports)
    assert vm.state is InstanceState.ACTIVE, vm.fault
    return vm


def rows(sessions: sessionmaker[Session]) -> Devices:
    with sessions() as session:
        found = session.execute(
            select(HostRow.name, DeviceRow.address, DeviceRow.state, DeviceRow.instance_id).join(
                HostRow, HostRow.id == DeviceRow.host_id
            )
        )
        return {(h, a): (s, o) for h, a, s, o in found}


def held_by(table: Devices, instance_id: str) -> set[tuple[str, str]]:
    return {key for key, (_, owner) in table.items() if owner == instance_id}


def test_dry_run_shows_the_plan_and_claims_nothing(services: Services) -> None:
    vm = boot(services, "small", VnicType.MACVTAP, VnicType.DIRECT)
    before = rows(services.sessions)
    result = migrations(services).migrate(LOCAL_ADMIN, vm.id, dry_run=True)
    plan = result.plan
    assert result.migration is None and plan.allowed
    assert plan.source_host == vm.host and plan.destination_host not in (None, vm.host)
    assert [i.action for i in plan.items] == [Action.TRANSPARENT, Action.UNPLUG_REPLUG]
    assert [i.vnic_type for i in plan.items] == [VnicType.MACVTAP, VnicType.DIRECT]
    assert "will be unplugged" in plan.warnings[0]
    assert all(len(i.destination) == 1 for i in plan.items)
    assert rows(services.sessions) == before
    with services.sessions() as session:
        assert session.scalars(select(MigrationRow)).all() == []


def test_destination_is_claimed_before_unplug_and_complete_frees_the_source(
    services: Services,
) -> None:
    vm = boot(services, "small", VnicType.MACVTAP, VnicType.DIRECT)
    service = migrations(services)
    result = service.migrate(LOCAL_ADMIN, vm.id)
    migration = result.migration
    assert migration is not None and migration.state is MigrationState.MIGRATING
    dest = result.plan.destination_host
    assert dest is not None and dest != vm.host
    table = rows(services.sessions)
    source_held = {(vm.host, str(a)) for r in vm.devices for a in r.devices}
    dest_held = {(dest, str(a)) for i in result.plan.items for a in i.destination}
    assert held_by(table, vm.id) == source_held | dest_held  # both hosts held meanwhile
    assert table[(dest, str(PF))] == (DeviceState.UNAVAILABLE.value, None)
    with pytest.raises(MigrationStateError):
        service.migrate(LOCAL_ADMIN, vm.id)  # one move at a time
    done = service.complete(LOCAL_ADMIN, vm.id)
    assert done.state is MigrationState.COMPLETED
    table = rows(services.sessions)
    assert held_by(table, vm.id) == dest_held
    assert table[(vm.host or "", str(PF))] == (DeviceState.AVAILABLE.value, None)
    moved = services.instances.show(LOCAL_ADMIN, vm.id)
    assert moved.host == dest and moved.placement == migration.placement
    port_ids = [r.request.requester.name for r in vm.devices]
    for port_id, item in zip(port_ids, result.plan.items, strict=True):
        port = services.networks.get_port(LOCAL_ADMIN, port_id)
        assert port.binding is not None and port.binding.host == dest
        assert port.binding.profile["pci_slot"] == str(item.destination[0])


def test_abort_frees_the_destination_and_keeps_the_source(services: Services) -> None:
    vm = boot(services, "lm", VnicType.DIRECT)
    before = rows(services.sessions)
    service = migrations(services)
    result = service.migrate(LOCAL_ADMIN, vm.id, "h2" if vm.host == "h1" else "h1")
    assert [i.action for i in result.plan.items] == [Action.MOVE, Action.UNPLUG_REPLUG]
    aborted = service.abort(LOCAL_ADMIN, vm.id, "migration failed: fake")
    assert aborted.state is MigrationState.ABORTED and aborted.reason == "migration failed: fake"
    assert rows(services.sessions) == before
    assert services.instances.show(LOCAL_ADMIN, vm.id).host == vm.host
    with pytest.raises(MigrationStateError):
        service.complete(LOCAL_ADMIN, vm.id)
    # a new migration can start once the first is over
    assert service.migrate(LOCAL_ADMIN, vm.id).migration is not None


def test_a_flavor_device_not_live_migratable_refuses_the_migration(services: Services) -> None:
    vm = boot(services, "nolm", VnicType.MACVTAP)
    service = migrations(services)
    plan = service.plan(LOCAL_ADMIN, vm.id)
    assert not plan.allowed and [i.action for i in plan.items] == [
        Action.REFUSED,
        Action.TRANSPARENT,
    ]
    before = rows(services.sessions)
    with pytest.raises(MigrationRefused) as caught:
        service.migrate(LOCAL_ADMIN, vm.id)
    assert "does not explicitly request live-migratable devices" in str(caught.value)
    assert rows(services.sessions) == before


def test_numa_policy_is_honoured_on_the_destination(
    services: Services, engine: Engine, tmp_path: Path
) -> None:
    # h3 has its VFs on cell 1, whose memory is too small for the guest's one NUMA node
    services.inventory.register_host("h3")
    services.inventory.report("h3", 0, InventoryReport(devices(vf_node=1), cells((8192, 512))))
    vm = boot(services, "numa", VnicType.DIRECT)
    service = migrations(services)
    other = "h2" if vm.host == "h1" else "h1"
    with pytest.raises(NoValidHost) as caught:
        service.plan(LOCAL_ADMIN, vm.id, "h3")
    assert "policy required" in str(caught.value), caught.value
    plan = service.plan(LOCAL_ADMIN, vm.id)
    assert plan.destination_host == other


def test_only_admins_migrate_and_the_source_agent_completes(services: Services) -> None:
    vm = boot(services, "small", VnicType.DIRECT)
    service = migrations(services)
    with pytest.raises(Forbidden):
        service.migrate(Principal(Role.MEMBER, project="default"), vm.id)
    with pytest.raises(InvalidInput):
        service.migrate(LOCAL_ADMIN, vm.id, vm.host)
    service.migrate(LOCAL_ADMIN, vm.id)
    other = "h2" if vm.host == "h1" else "h1"
    with pytest.raises(Forbidden):
        service.complete(Principal(Role.AGENT, host=other), vm.id)
    done = service.complete(Principal(Role.AGENT, host=vm.host), vm.id)
    assert done.state is MigrationState.COMPLETED


def test_a_boot_racing_the_destination_claim_never_doubles_a_device(
    services: Services, sessions: sessionmaker[Session]
) -> None:
    vm = boot(services, "small", VnicType.DIRECT, VnicType.DIRECT)
    # a second controller process: its own scheduler over the same database
    groups, flavors = GroupService(sessions), FlavorService(sessions)
    other = InstanceService(
        sessions, flavors, groups, Scheduler(sessions), binder=services.networks
    )
    service = migrations(services)
    won: list[str] = []

    def run(action: str) -> None:
        if action == "migrate":
            try:
                service.migrate(LOCAL_ADMIN, vm.id)
                won.append(action)
            except NoValidHost:
                pass
        else:
            nics = [Nic(net="n", vnic_type=VnicType.DIRECT)] * 2
            ports = services.networks.resolve_nics(LOCAL_ADMIN, nics).ports
            racer = other.boot(LOCAL_ADMIN, "racer", "small", ports=ports)
            if racer.state is InstanceState.ACTIVE:
                won.append(action)

    threads = [threading.Thread(target=run, args=(a,)) for a in ("migrate", "boot", "boot")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # every claim (live instance placements + migrations in flight) names distinct devices,
    # each held by its claimer in the device rows
    with sessions() as session:
        claims = [
            (host, placement, owner)
            for host, placement, owner in session.execute(
                select(InstanceRow.host_id, InstanceRow.placement, InstanceRow.id).where(
                    InstanceRow.state == InstanceState.ACTIVE.value
                )
            )
        ]
        claims += list(
            session.execute(
                select(MigrationRow.dest_host_id, MigrationRow.placement, MigrationRow.instance_id)
            )
        )
        owners = {
            (h, a): o
            for h, a, o in session.execute(
                select(DeviceRow.host_id, DeviceRow.address, DeviceRow.instance_id)
            )
        }
    seen: set[tuple[str, str]] = set()
    for host, placement, owner in claims:
        for group in placement["devices"]:
            for address in group:
                assert (host, address) not in seen
                seen.add((host, address))
                assert owners[(host, address)] == owner
    assert sum(1 for o in owners.values() if o is not None) == len(seen)
    assert len(won) == 1  # two VFs left in the fleet: exactly one of the three got them
