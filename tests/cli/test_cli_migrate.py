"""``pcifleet migrate`` and ``pcifleet migration show|complete|abort`` against an embedded
controller with two NIC hosts: the plan table before anything runs, warnings, a refusal with
its exit code, and the migration's life."""

from __future__ import annotations

import json

import pytest
from cli_kit import Cli

from pcifleet.control.container import Services
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.instances import InstanceRecord
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.networks import Nic
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import VnicType
from pcifleet.network.segments import NetworkType, SegmentSpec

PF = PciAddress.parse("0000:3b:00.0")


def nic() -> InventoryReport:
    tags = Tags({"physical_network": "physnet1"})
    pf = Device(PF, "8086", "1572", DeviceType.PF, "020000", 0, tags=tags)
    vfs = [
        Device(PF.offset(16 + i), "8086", "154c", DeviceType.VF, "020000", 0, PF, i, tags=tags)
        for i in range(2)
    ]
    return InventoryReport([pf, *vfs], [NumaCell(0, 0, frozenset(range(8)), 16384)])


@pytest.fixture
def fleet(services: Services) -> Services:
    for host in ("h1", "h2"):
        services.inventory.register_host(host)
        services.inventory.report(host, 0, nic())
    services.flavors.create(LOCAL_ADMIN, parse_flavor("small", 2, 1024, {}))
    services.networks.create_network(LOCAL_ADMIN, "n", [SegmentSpec(NetworkType.VLAN, "physnet1")])
    return services


def boot(services: Services, *vnics: VnicType) -> InstanceRecord:
    nics = [Nic(net="n", vnic_type=v) for v in vnics]
    ports = services.networks.resolve_nics(LOCAL_ADMIN, nics).ports
    vm = services.instances.boot(LOCAL_ADMIN, "vm", "small", ports=ports)
    assert vm.host in ("h1", "h2"), vm.fault
    return vm


def other(host: str | None) -> str:
    return "h2" if host == "h1" else "h1"


def test_dry_run_prints_the_whole_plan_and_claims_nothing(run: Cli, fleet: Services) -> None:
    vm = boot(fleet, VnicType.MACVTAP, VnicType.DIRECT)
    result = run("migrate", vm.id, "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"plan of {vm.id}: {vm.host} -> {other(vm.host)}" in out
    for text in ("device/port", "vnic type", "macvtap", "transparent", "unplug-replug"):
        assert text in out
    for request in vm.devices:
        assert str(request.devices[0]) in out  # the source devices, with their destinations
    assert out.count(" -> 0000:3b:") == 2
    assert "warning: mixed vnic types" in out
    assert "claimed of" not in out
    with pytest.raises(Exception, match="has no migration"):
        fleet.migrations.show(LOCAL_ADMIN, vm.id)


def test_migrate_shows_the_plan_then_claims_and_the_migration_completes(
    run: Cli, fleet: Services
) -> None:
    vm = boot(fleet, VnicType.DIRECT)
    dest = other(vm.host)
    result = run("migrate", vm.id, "--host", dest)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.index(f"plan of {vm.id}") < out.index(f"claimed of {vm.id}")
    assert "migrating: destination devices claimed" in out
    result = run("migration", "show", vm.id, "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["state"] == "migrating" and shown["destination_host"] == dest
    assert shown["plan"]["items"][0]["action"] == "unplug-replug"
    result = run("migration", "complete", vm.id)
    assert result.exit_code == 0 and "completed" in result.output, result.output
    assert fleet.instances.show(LOCAL_ADMIN, vm.id).host == dest
    assert run("migration", "complete", vm.id).exit_code == 6  # nothing in flight


def test_abort_and_json(run: Cli, fleet: Services) -> None:
    vm = boot(fleet, VnicType.MACVTAP)
    result = run("migrate", vm.id, "--json")
    assert result.exit_code == 0, result.output
    started = json.loads(result.output)
    assert started["migration"]["state"] == "migrating"
    assert started["plan"]["items"][0]["destination"]
    result = run("migration", "abort", vm.id, "--reason", "libvirt said no")
    assert result.exit_code == 0, result.output
    assert "aborted" in result.output and "libvirt said no" in result.output
    assert run("migration", "abort", vm.id).exit_code == 2  # --reason is required


def test_a_refused_plan_is_red_and_exits_6(run: Cli, fleet: Services) -> None:
    vm = boot(fleet, VnicType.DIRECT_PHYSICAL)
    for args in ((), ("--dry-run",)):
        result = run("migrate", vm.id, *args)
        assert result.exit_code == 6, result.output
        assert "refused: port" in result.output and str(PF) in result.output
        assert "not marked live_migratable" in result.output
    result = run("migrate", vm.id, "--json")
    assert result.exit_code == 6 and json.loads(result.output)["plan"]["allowed"] is False
    assert "claimed of" not in run("migrate", vm.id).output


def test_errors_exit_with_their_kind(run: Cli, fleet: Services) -> None:
    vm = boot(fleet, VnicType.DIRECT)
    assert run("migrate", "nope").exit_code == 5
    assert run("migrate", vm.id, "--host", "nowhere").exit_code == 5
    result = run("migrate", vm.id, "--host", vm.host or "")
    assert result.exit_code == 2 and "current host" in result.output
    assert run("migration", "show", vm.id).exit_code == 5
