"""The instance use case on SQLite and PostgreSQL: boot, delete, quotas, private groups, error
state, visibility."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import DeviceRow
from pcifleet.control.scheduler.codec import InstanceState
from pcifleet.control.services.flavors import FlavorService, parse_flavor
from pcifleet.control.services.groups import GroupService
from pcifleet.control.services.instances import InstanceService, PortRequest, instance_service
from pcifleet.control.services.inventory import InventoryReport, InventoryService
from pcifleet.control.services.principal import LOCAL_ADMIN, Principal, Role
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.errors import Forbidden, NotFound, QuotaExceeded, UnknownGroup
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.request import DeviceMatch
from pcifleet.domain.tags import Tags

PF = PciAddress.parse("0000:3b:00.0")
ALICE = Principal(Role.MEMBER, project="alice")
BOB = Principal(Role.MEMBER, project="bob")


def nic() -> list[Device]:
    tags = Tags({"physical_network": "physnet1"})
    pf = Device(PF, "8086", "1572", DeviceType.PF, "020000", 0, tags=tags)
    vfs = [
        Device(PF.offset(16 + i), "8086", "154c", DeviceType.VF, "020000", 0, PF, i, tags=tags)
        for i in range(2)
    ]
    return [pf, *vfs]


@pytest.fixture
def service(sessions: sessionmaker[Session], engine: Engine, tmp_path: Path) -> InstanceService:
    settings = Settings(tmp_path, str(engine.url))
    inventory = InventoryService(sessions, settings)
    inventory.register_host("h1")
    cell = NumaCell(0, 0, frozenset(range(8)), 16384)
    inventory.report("h1", 0, InventoryReport(nic(), [cell]))
    groups, flavors = GroupService(sessions), FlavorService(sessions)
    vf = DeviceMatch.of(physical_network="physnet1")
    groups.create(LOCAL_ADMIN, DeviceGroup("vf", (vf,), DeviceType.VF))
    groups.create(LOCAL_ADMIN, DeviceGroup("pf", (vf,), DeviceType.PF))
    groups.create(ALICE, DeviceGroup("alice-vf", (vf,), DeviceType.VF))
    for name, alias in (("vf", "vf:1"), ("pf", "pf:1"), ("alice", "alice-vf:1")):
        flavors.create(LOCAL_ADMIN, parse_flavor(name, 1, 512, {"pci_passthrough:alias": alias}))
    return instance_service(sessions, settings, flavors, groups)


def states(sessions: sessionmaker[Session]) -> dict[str, tuple[str, str | None]]:
    with sessions() as session:
        rows = session.execute(select(DeviceRow.address, DeviceRow.state, DeviceRow.instance_id))
        return {a: (s, o) for a, s, o in rows}


def test_vf_boot_blocks_the_pf_and_delete_restores_it(
    service: InstanceService, sessions: sessionmaker[Session]
) -> None:
    vm = service.boot(ALICE, "vm1", "vf")
    assert vm.state is InstanceState.ACTIVE and vm.project == "alice"
    vf = str(vm.devices[0].devices[0])
    assert states(sessions)[vf] == (DeviceState.ALLOCATED.value, vm.id)
    assert states(sessions)[str(PF)] == (DeviceState.UNAVAILABLE.value, None)
    pf_boot = service.boot(ALICE, "vm2", "pf")
    assert pf_boot.state is InstanceState.ERROR  # the PF is blocked by its VF
    service.delete(ALICE, vm.id)
    assert {s for s, _ in states(sessions).values()} == {DeviceState.AVAILABLE.value}
    assert service.boot(ALICE, "vm3", "pf").state is InstanceState.ACTIVE


def test_ports_ask_for_devices_next_to_the_flavor(service: InstanceService) -> None:
    vm = service.boot(
        LOCAL_ADMIN, "vm1", "vf", ports=(PortRequest("port-1", "direct", "physnet1"),)
    )
    assert [r.request.requester.name for r in vm.devices] == ["vf", "port-1"]
    assert len({a for r in vm.devices for a in r.devices}) == 2
    normal = service.boot(LOCAL_ADMIN, "vm2", "vf", ports=(PortRequest("port-2", "normal"),))
    assert normal.state is InstanceState.ERROR  # no VF left; the normal port needs none
    assert len(normal.requests) == 1


def test_private_groups_are_only_for_their_project(service: InstanceService) -> None:
    assert service.boot(ALICE, "vm1", "alice").state is InstanceState.ACTIVE
    with pytest.raises(UnknownGroup):
        service.boot(BOB, "vm2", "alice")
    with pytest.raises(Forbidden):
        service.boot(BOB, "vm3", "vf", project="alice")


def test_quotas_count_devices_of_live_instances(
    service: InstanceService, sessions: sessionmaker[Session]
) -> None:
    GroupService(sessions).set_quota(LOCAL_ADMIN, "vf", "alice", 1)
    first = service.boot(ALICE, "vm1", "vf")
    with pytest.raises(QuotaExceeded) as info:
        service.boot(ALICE, "vm2", "vf")
    assert "its quota is 1" in str(info.value)
    assert service.boot(BOB, "vm3", "vf").state is InstanceState.ACTIVE  # other project
    service.delete(ALICE, first.id)
    assert service.boot(ALICE, "vm4", "vf").state is InstanceState.ACTIVE


def test_members_see_only_their_instances(service: InstanceService) -> None:
    vm = service.boot(ALICE, "vm1", "vf")
    assert [i.id for i in service.list(ALICE)] == [vm.id]
    assert service.list(BOB) == []
    assert service.list(BOB, project="alice") == []
    with pytest.raises(NotFound):
        service.show(BOB, vm.id)
    with pytest.raises(NotFound):
        service.delete(BOB, vm.id)
    assert [i.id for i in service.list(LOCAL_ADMIN, project="alice")] == [vm.id]


def test_error_instances_keep_their_fault_and_delete_cleanly(service: InstanceService) -> None:
    service.boot(ALICE, "vm1", "pf")
    vm = service.boot(ALICE, "vm2", "pf")
    assert vm.state is InstanceState.ERROR and vm.fault is not None
    assert "1 host: 1 had fewer than 1 free PFs on physnet1" in vm.fault.message
    assert service.show(ALICE, vm.id).fault == vm.fault
    assert service.delete(ALICE, vm.id).state is InstanceState.DELETED
    assert service.delete(ALICE, vm.id).state is InstanceState.DELETED  # idempotent
