"""Deleting a guest in the middle of a live migration (SQLite and PostgreSQL): the migration is
aborted in the delete's own transaction, so both hosts' devices are free afterwards, the
ports unbound, and the audit finds nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from pcifleet.control.audit import audit_database
from pcifleet.control.container import Services, build_services
from pcifleet.control.db.models import DeviceRow, HostRow
from pcifleet.control.scheduler.codec import InstanceState
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.migrations import MigrationState
from pcifleet.control.services.networks import Nic
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.request import DeviceMatch
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import VnicType
from pcifleet.network.segments import NetworkType, SegmentSpec

PF = PciAddress.parse("0000:3b:00.0")
GPU = PciAddress.parse("0000:af:00.0")


def report() -> InventoryReport:
    nic = Tags({"physical_network": "physnet1"})
    pf = Device(PF, "8086", "1572", DeviceType.PF, "020000", 0, tags=nic)
    vfs = [
        Device(PF.offset(16 + i), "8086", "154c", DeviceType.VF, "020000", 0, PF, i, tags=nic)
        for i in range(2)
    ]
    gpu = Device(
        GPU, "10de", "1eb8", DeviceType.PCI, "030200", 0, tags=Tags({"live_migratable": "true"})
    )
    return InventoryReport([pf, *vfs, gpu], [NumaCell(0, 0, frozenset(range(8)), 16384)])


@pytest.fixture
def services(engine: Engine, tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(tmp_path, str(engine.url)), engine=engine)
    for host in ("h1", "h2"):
        built.inventory.register_host(host)
        built.inventory.report(host, 0, report())
    lm = DeviceMatch.of("10de", "1eb8", live_migratable="true")
    built.groups.create(LOCAL_ADMIN, DeviceGroup("gpu-lm", (lm,)))
    built.flavors.create(
        LOCAL_ADMIN, parse_flavor("lm", 2, 1024, {"pci_passthrough:alias": "gpu-lm:1"})
    )
    built.networks.create_network(LOCAL_ADMIN, "n", [SegmentSpec(NetworkType.VLAN, "physnet1")])
    yield built


def held(services: Services) -> dict[tuple[str, str], tuple[str, str | None]]:
    with services.sessions() as session:
        rows = session.execute(
            select(HostRow.name, DeviceRow.address, DeviceRow.state, DeviceRow.instance_id)
            .join(HostRow, HostRow.id == DeviceRow.host_id)
            .where(DeviceRow.instance_id.is_not(None))
        )
        return {(h, a): (s, o) for h, a, s, o in rows}


def test_delete_mid_migration_aborts_it_and_frees_both_hosts(services: Services) -> None:
    nics = [Nic(net="n", vnic_type=VnicType.MACVTAP), Nic(net="n", vnic_type=VnicType.DIRECT)]
    ports = services.networks.resolve_nics(LOCAL_ADMIN, nics).ports
    vm = services.instances.boot(LOCAL_ADMIN, "vm", "lm", ports=ports)
    assert vm.state is InstanceState.ACTIVE, vm.fault
    result = services.migrations.migrate(LOCAL_ADMIN, vm.id)
    dest = result.plan.destination_host
    assert dest is not None and dest != vm.host
    hosts_held = {host for host, _ in held(services)}
    assert hosts_held == {vm.host, dest}  # the guest holds both hosts meanwhile
    assert audit_database(services.engine).clean  # holding both is no violation

    deleted = services.instances.delete(LOCAL_ADMIN, vm.id)

    assert deleted.state is InstanceState.DELETED
    assert held(services) == {}
    migration = services.migrations.show(LOCAL_ADMIN, vm.id)
    assert migration.state is MigrationState.ABORTED and migration.reason == "instance deleted"
    for port in ports:
        assert services.networks.get_port(LOCAL_ADMIN, port.port_id).binding is None
    with services.sessions() as session:
        states = set(session.scalars(select(DeviceRow.state)))
    assert states == {DeviceState.AVAILABLE.value}
    assert audit_database(services.engine).clean
    # the destination's devices are schedulable again: a guest fits there
    again = services.instances.boot(LOCAL_ADMIN, "vm2", "lm", ports=())
    assert again.state is InstanceState.ACTIVE, again.fault


def test_delete_without_migration_or_after_one_is_unchanged(services: Services) -> None:
    vm = services.instances.boot(LOCAL_ADMIN, "vm", "lm")
    services.migrations.migrate(LOCAL_ADMIN, vm.id)
    moved = services.migrations.complete(LOCAL_ADMIN, vm.id)
    services.instances.delete(LOCAL_ADMIN, vm.id)
    assert services.migrations.show(LOCAL_ADMIN, vm.id).state is MigrationState.COMPLETED
    assert moved.state is MigrationState.COMPLETED and held(services) == {}
