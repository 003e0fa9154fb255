"""The database audit on SQLite and PostgreSQL: a fleet after boots and deletes is clean, and
every invariant broken deliberately with direct SQL is found with its code."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from pcifleet.cli.main import app as cli
from pcifleet.control.audit import (
    Code,
    DeviceFacts,
    HostFacts,
    InstanceFacts,
    audit_database,
    audit_host,
)
from pcifleet.control.db.models import DeviceRow, HostRow, InstanceRow
from pcifleet.control.services.flavors import FlavorService, parse_flavor
from pcifleet.control.services.groups import GroupService
from pcifleet.control.services.instances import InstanceService, instance_service
from pcifleet.control.services.inventory import InventoryReport, InventoryService
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.request import DeviceMatch
from pcifleet.domain.tags import Tags

PF = PciAddress.parse("0000:3b:00.0")
VF0, VF1, VF2 = (PF.offset(16 + i) for i in range(3))
GPU = PciAddress.parse("0000:d8:00.0")
runner = CliRunner(env={"COLUMNS": "200", "PCIFLEET_DATABASE_URL": None})


def devices() -> list[Device]:
    tags = Tags({"physical_network": "physnet1"})
    pf = Device(PF, "8086", "1572", DeviceType.PF, "020000", 0, tags=tags)
    vfs = [
        Device(PF.offset(16 + i), "8086", "154c", DeviceType.VF, "020000", 0, PF, i, tags=tags)
        for i in range(3)
    ]
    return [pf, *vfs, Device(GPU, "10de", "2330", DeviceType.PCI, "030200", 0)]


@dataclass
class Fleet:
    sessions: sessionmaker[Session]
    engine: Engine
    instances: InstanceService

    def boot(self, flavor: str) -> str:
        record = self.instances.boot(LOCAL_ADMIN, f"vm-{flavor}", flavor)
        assert record.placement is not None, record.fault
        return record.id

    def execute(self, *statements: object) -> None:
        with self.sessions.begin() as session:
            for statement in statements:
                session.execute(statement)  # type: ignore[call-overload]

    def host_id(self, name: str) -> str:
        with self.sessions() as session:
            return str(session.scalar(select(HostRow.id).where(HostRow.name == name)))

    def codes(self) -> set[Code]:
        return {v.code for v in audit_database(self.engine).violations}


@pytest.fixture
def fleet(sessions: sessionmaker[Session], engine: Engine, tmp_path: Path) -> Fleet:
    settings = Settings(tmp_path, str(engine.url))
    inventory = InventoryService(sessions, settings)
    cell = NumaCell(0, 0, frozenset(range(16)), 32768)
    for name in ("h1", "h2"):
        inventory.register_host(name)
        inventory.report(name, 0, InventoryReport(devices(), [cell]))
    groups, flavors = GroupService(sessions), FlavorService(sessions)
    nic = DeviceMatch.of(physical_network="physnet1")
    groups.create(LOCAL_ADMIN, DeviceGroup("vf", (nic,), DeviceType.VF))
    groups.create(LOCAL_ADMIN, DeviceGroup("pf", (nic,), DeviceType.PF))
    groups.create(LOCAL_ADMIN, DeviceGroup("gpu", (DeviceMatch.of(vendor_id="10de"),)))
    for name, alias in (("vf", "vf:1"), ("pf", "pf:1"), ("gpu", "gpu:1"), ("two", "vf:2")):
        flavors.create(LOCAL_ADMIN, parse_flavor(name, 1, 512, {"pci_passthrough:alias": alias}))
    return Fleet(sessions, engine, instance_service(sessions, settings, flavors, groups))


def test_a_fleet_after_boots_and_deletes_is_clean(fleet: Fleet) -> None:
    booted = [fleet.boot(f) for f in ("vf", "two", "gpu", "pf", "gpu")]
    report = audit_database(fleet.engine)
    assert report.clean, report.violations
    assert (report.hosts, report.devices, report.instances) == (2, 10, 5)
    assert report.held == 6  # 1 + 2 VFs, 2 GPUs, 1 PF
    for instance_id in booted[::2]:
        fleet.instances.delete(LOCAL_ADMIN, instance_id)
    fleet.boot("vf")
    report = audit_database(fleet.engine)
    assert report.clean, report.violations
    assert (report.instances, report.held) == (6, 4)


def _device(host_id: str, address: PciAddress, **values: object) -> object:
    where = (DeviceRow.host_id == host_id, DeviceRow.address == str(address))
    return update(DeviceRow).where(*where).values(**values)


def _instance(instance_id: str, **values: object) -> object:
    return update(InstanceRow).where(InstanceRow.id == instance_id).values(**values)


def _held_vf(fleet: Fleet) -> tuple[str, PciAddress, str]:
    """Boot a VF guest on h1 only; (instance id, its VF, h1's id)."""
    fleet.execute(update(HostRow).where(HostRow.name == "h2").values(disabled=True))
    instance_id = fleet.boot("vf")
    with fleet.sessions() as session:
        address = session.scalar(
            select(DeviceRow.address).where(DeviceRow.instance_id == instance_id)
        )
    return instance_id, PciAddress.parse(str(address)), fleet.host_id("h1")


def _free_vf(held: PciAddress) -> PciAddress:
    return next(vf for vf in (VF0, VF1, VF2) if vf != held)


Breaker = Callable[[Fleet, str, PciAddress, str], list[object]]

CASES: list[tuple[str, Breaker, set[Code]]] = [
    (
        "allocated without an instance",
        lambda f, i, vf, h: [_device(h, _free_vf(vf), state="allocated", instance_id=None)],
        {Code.HELD_WITHOUT_INSTANCE, Code.POOL_COUNT},
    ),
    (
        "held by a deleted instance",
        lambda f, i, vf, h: [_instance(i, state="deleted")],
        {Code.OWNER_NOT_LIVE, Code.POOL_COUNT},
    ),
    (
        "held by an instance placed on another host",
        lambda f, i, vf, h: [_instance(i, host_id=f.host_id("h2"))],
        {Code.OWNER_ON_OTHER_HOST, Code.INSTANCE_DEVICE_NOT_HELD, Code.POOL_COUNT},
    ),
    (
        "a free device naming an instance",
        lambda f, i, vf, h: [_device(h, _free_vf(vf), instance_id=i)],
        {Code.OWNER_ON_FREE_DEVICE},
    ),
    (
        "held but missing from the placement",
        lambda f, i, vf, h: [_instance(i, placement={"cells": [], "devices": [[]]})],
        {Code.NOT_IN_PLACEMENT, Code.POOL_COUNT},
    ),
    (
        "a vanished device nobody holds",
        lambda f, i, vf, h: [_device(h, GPU, vanished=True)],
        {Code.VANISHED_NOT_HELD},
    ),
    (
        "a PF and its VF both in use",
        lambda f, i, vf, h: [_device(h, PF, state="allocated", instance_id=i)],
        # the other VFs should now be blocked, and the PF counts in no placement
        {Code.PF_AND_VF_IN_USE, Code.NOT_IN_PLACEMENT, Code.COUPLING, Code.POOL_COUNT},
    ),
    (
        "a PF left available under a used VF",
        lambda f, i, vf, h: [_device(h, PF, state="available")],
        {Code.COUPLING},
    ),
    (
        "a live instance without a host",
        lambda f, i, vf, h: [_instance(i, host_id=None)],
        {Code.INSTANCE_HOST_MISSING, Code.OWNER_ON_OTHER_HOST, Code.POOL_COUNT},
    ),
    (
        "a placement listing a device the host lacks",
        lambda f, i, vf, h: [_instance(i, placement={"devices": [[str(vf), "0000:99:00.0"]]})],
        {Code.INSTANCE_DEVICE_MISSING},
    ),
    (
        "a placement listing a free device",
        lambda f, i, vf, h: [_device(h, vf, state="available", instance_id=None)],
        {Code.INSTANCE_DEVICE_NOT_HELD, Code.COUPLING, Code.POOL_COUNT},
    ),
    (
        "a negative generation",
        lambda f, i, vf, h: [update(HostRow).where(HostRow.id == h).values(generation=-1)],
        {Code.GENERATION},
    ),
    (
        "devices in use on a host at generation 0",
        lambda f, i, vf, h: [update(HostRow).where(HostRow.id == h).values(generation=0)],
        {Code.GENERATION},
    ),
]


@pytest.mark.parametrize(("case", "breaker", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_broken_invariant_is_found(
    fleet: Fleet, case: str, breaker: Breaker, expected: set[Code]
) -> None:
    instance_id, vf, host_id = _held_vf(fleet)
    assert fleet.codes() == set(), case
    fleet.execute(*breaker(fleet, instance_id, vf, host_id))
    assert fleet.codes() == expected


def test_two_consumers_of_one_device(fleet: Fleet) -> None:
    instance_id, vf, _ = _held_vf(fleet)
    with fleet.sessions() as session:
        row = session.get_one(InstanceRow, instance_id)
        copy = {c.key: getattr(row, c.key) for c in InstanceRow.__mapper__.column_attrs}
    fleet.execute(insert(InstanceRow).values(copy | {"id": str(uuid.uuid4())}))
    assert fleet.codes() == {
        Code.TWO_CONSUMERS,
        Code.INSTANCE_DEVICE_NOT_HELD,
        Code.POOL_COUNT,
    }
    violation = next(
        v for v in audit_database(fleet.engine).violations if v.code is Code.TWO_CONSUMERS
    )
    assert violation.host == "h1" and violation.subject == str(vf)
    assert "listed by 2 live instances" in violation.message


def test_a_device_naming_an_instance_that_does_not_exist() -> None:
    """The foreign key prevents it in the database; the check still stands on its own."""
    host = HostFacts("h", "h1", 3, 1)
    held = DeviceFacts(GPU, DeviceType.PCI, None, DeviceState.ALLOCATED, "gone", False, "gpu")
    found = audit_host(host, [held], {})
    assert [v.code for v in found] == [Code.OWNER_MISSING, Code.POOL_COUNT]
    assert "gone, which does not exist" in found[0].message


def test_violation_messages_name_what_is_wrong() -> None:
    host = HostFacts("h", "h1", 5, 1)
    pf = DeviceFacts(PF, DeviceType.PF, None, DeviceState.ALLOCATED, "a", False, "pf")
    vf = DeviceFacts(VF0, DeviceType.VF, PF, DeviceState.ALLOCATED, "b", False, "vf")
    instances = {
        "a": InstanceFacts("a", "vm-a", "h", "active", (PF,)),
        "b": InstanceFacts("b", "vm-b", "h", "active", (VF0,)),
    }
    found = audit_host(host, [pf, vf], instances)
    assert [v.code for v in found] == [Code.PF_AND_VF_IN_USE]
    assert found[0].message == (
        f"PF {PF} is allocated while its VF {VF0} is allocated (1 VFs in use)"
    )


def test_cli_exit_codes_and_json(fleet: Fleet) -> None:
    url = ["--database-url", str(fleet.engine.url.render_as_string(hide_password=False))]
    instance_id, vf, _ = _held_vf(fleet)
    clean = runner.invoke(cli, ["audit", *url])
    assert clean.exit_code == 0, clean.output
    assert "no violation: 2 hosts, 10 devices (1 in use), 1 instances" in clean.stdout
    fleet.execute(_instance(instance_id, state="deleted"))
    table = runner.invoke(cli, ["audit", *url])
    assert table.exit_code == 1
    assert "device.owner_not_live" in table.stdout and str(vf) in table.stdout
    document = json.loads(runner.invoke(cli, ["audit", "--json", *url]).stdout)
    assert document["clean"] is False and document["held"] == 1
    assert {v["code"] for v in document["violations"]} == {"device.owner_not_live", "pool.count"}


def test_cli_unreachable_database_exits_3(tmp_path: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    result = runner.invoke(cli, ["audit", "--database-url", url])
    assert result.exit_code == 3
    assert "pcifleet.unavailable" in result.stderr
