"""Live migration acted out by two agents in one process on fake hypervisor peers and fake VF
tables: the controller claims the destination, the source agent runs the move from its
desired state and reports it, the destination agent adopts the domain (VFs configured, not
plugged twice), the source's VFs are restored; injected failures abort with the guest still
running on the source, its ports re-plugged and its VFs intact."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from pcifleet.client import PcifleetClient
from pcifleet.control.api.app import create_app
from pcifleet.control.api.schemas.instances import InstanceOut, NicIn
from pcifleet.control.api.schemas.networks import NetworkCreate, SegmentIn
from pcifleet.control.container import Services, build_services
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.principal import LOCAL_ADMIN, Role
from pcifleet.control.settings import settings_from_env
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.spec import parse_spec_list
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import VnicType
from pcifleet.host.agent import Agent, AgentConfig
from pcifleet.host.hypervisor.driver import DomainState, Operation
from pcifleet.host.hypervisor.fake import FakeHypervisor
from pcifleet.host.migrator import Migrator
from pcifleet.host.plugger import HostApplier, domain_name
from pcifleet.host.rescan import Rescanner
from pcifleet.host.sysfs import SysfsReader
from pcifleet.host.vf.fake import FakeVfConfigurator
from pcifleet.host.vf.model import ZERO_MAC
from pcifleet.host.vf.service import VfManager
from pcifleet.network.segments import NetworkType

PF = "0000:3b:00.0"
VFS = ("0000:3b:02.0", "0000:3b:02.1", "0000:3b:02.2")
PF_NETDEV = "ens1f0"
HOSTS = ("h1", "h2")


def _device(address: str, dev_type: DeviceType, **extra: object) -> Device:
    fields: dict[str, object] = {
        "vendor_id": "8086",
        "product_id": "1572" if dev_type is DeviceType.PF else "154c",
        "dev_type": dev_type,
        "numa_node": 0,
        "tags": Tags({"physical_network": "physnet1"}),
    }
    return Device(PciAddress.parse(address), **(fields | extra))  # type: ignore[arg-type]


def inventory() -> InventoryReport:
    pf = _device(PF, DeviceType.PF, netdevs=(PF_NETDEV,))
    vfs = [
        _device(a, DeviceType.VF, parent=pf.address, vf_index=i, netdevs=(f"{PF_NETDEV}v{i}",))
        for i, a in enumerate(VFS)
    ]
    return InventoryReport([pf, *vfs], [NumaCell(0, 0, frozenset(range(8)), 16384)])


@dataclass
class Side:
    """One host: its fake hypervisor and VF table, and its agent."""

    name: str
    hypervisor: FakeHypervisor
    vfs: FakeVfConfigurator
    agent: Agent

    def domains(self) -> set[str]:
        return {d.name for d in self.hypervisor.list_domains()}

    def sources(self, name: str) -> set[str]:
        """The PCI addresses and macvtap netdevs of the running domain's devices."""
        return {
            value
            for device in self.hypervisor.devices(name)
            for kind, value in device.keys
            if kind in ("pci", "direct-dev")
        }

    def mac(self, vf_index: int) -> str:
        return self.vfs.read(PF_NETDEV, vf_index).mac


@dataclass
class World:
    services: Services
    admin: PcifleetClient
    sides: dict[str, Side]

    def boot(self, vnic: VnicType) -> InstanceOut:
        self.admin.create_network(
            NetworkCreate(
                name="n1",
                segments=[SegmentIn(network_type=NetworkType.VLAN, physical_network="physnet1")],
                shared=True,
            )
        )
        vm = self.admin.boot("vm1", "small", nics=[NicIn(net="n1", vnic_type=vnic)])
        assert vm.state == "active" and vm.host in HOSTS
        return vm

    def held(self, host: str) -> dict[str, str | None]:
        return {d.address: d.instance_id for d in self.admin.list_devices(host=host)}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    services = build_services(settings_from_env({}, data_dir=tmp_path), migrate_schema=True)
    app = create_app(services)
    hypervisors = {h: FakeHypervisor(f"fake://{h}/") for h in HOSTS}
    for hv in hypervisors.values():
        hv.peers = {o.uri: o for o in hypervisors.values() if o is not hv}
    sides, clients = {}, []
    for name in HOSTS:
        table = FakeVfConfigurator()
        table.add_pf(PF_NETDEV, len(VFS))
        sides[name] = _side(app, services, name, hypervisors[name], table, clients)
        sides[name].agent.register()
        services.inventory.report(name, 0, inventory())
    services.flavors.create(LOCAL_ADMIN, parse_flavor("small", 2, 2048, {}))
    admin = PcifleetClient.in_process(app, services.tokens.create(Role.ADMIN)[1])
    yield World(services, admin, sides)
    for client in [admin, *clients]:
        client.close()
    services.close()


def _side(
    app: FastAPI,
    services: Services,
    name: str,
    hypervisor: FakeHypervisor,
    table: FakeVfConfigurator,
    clients: list[PcifleetClient],
) -> Side:
    client = PcifleetClient.in_process(app, services.tokens.create(Role.AGENT, host=name)[1])
    clients.append(client)
    applier = HostApplier(VfManager(table), hypervisor)
    config = AgentConfig(
        host=name, specs=parse_spec_list([]), hypervisor_uri=hypervisor.uri, interval=0.01
    )
    rescanner = Rescanner(SysfsReader(Path("/nonexistent")), pci_ids=False)
    agent = Agent(client, rescanner, config, applier, Migrator(applier))
    return Side(name, hypervisor, table, agent)


def restart(side: Side) -> Side:
    """A new agent process on the same host: fresh applier and VF manager, same hypervisor
    and VF table (they outlive the agent)."""
    applier = HostApplier(VfManager(side.vfs), side.hypervisor)
    old = side.agent
    agent = Agent(old.client, old.rescanner, old.config, applier, Migrator(applier))
    return Side(side.name, side.hypervisor, side.vfs, agent)


def started(world: World, vnic: VnicType) -> tuple[InstanceOut, Side, Side, int, int]:
    """A guest booted and plugged by its agent, its migration claimed: (vm, source,
    destination, source VF index, destination VF index)."""
    vm = world.boot(vnic)
    source = world.sides[vm.host or ""]
    dest = world.sides[next(h for h in HOSTS if h != vm.host)]
    assert source.agent.reconcile().plugged == (vm.id,)
    result = world.admin.migrate(vm.id)
    assert result.migration is not None and result.plan.destination_host == dest.name
    item = result.plan.items[0]
    return vm, source, dest, VFS.index(item.source[0]), VFS.index(item.destination[0])


@pytest.mark.parametrize(
    ("vnic", "action", "kind"),
    [
        (VnicType.MACVTAP, "transparent", "netdev"),
        (VnicType.DIRECT, "unplug-replug", "pci"),
    ],
)
def test_fake_two_agents_migrate_a_guest_and_the_destination_adopts_it(
    world: World, vnic: VnicType, action: str, kind: str
) -> None:
    vm, source, dest, src_vf, dst_vf = started(world, vnic)
    name = domain_name(vm.id)
    port_mac = world.admin.list_ports(instance=vm.id)[0].mac_address
    assert source.mac(src_vf) == port_mac
    # the destination's agent leaves the incoming guest alone and plugs nothing meanwhile
    assert dest.agent.reconcile().plugged == ()
    assert dest.domains() == set()

    moved = source.agent.reconcile()
    assert moved.plugged == moved.unplugged == moved.failed == ()
    assert world.admin.show_migration(vm.id).state == "completed"
    assert world.admin.show_instance(vm.id).host == dest.name
    assert name not in source.domains()
    assert dest.hypervisor.state(name) is DomainState.RUNNING
    expected = f"{PF_NETDEV}v{dst_vf}" if kind == "netdev" else VFS[dst_vf]
    assert dest.sources(name) == {expected}
    source_ops = [o for o in source.hypervisor.operations() if o is not Operation.LIST]
    unplugged = [Operation.DETACH] if action == "unplug-replug" else []
    assert [o for o in source_ops if o in (Operation.DETACH, Operation.MIGRATE)] == [
        *unplugged,
        Operation.MIGRATE,
    ]
    assert source.mac(src_vf) == ZERO_MAC  # the source VF restored from its snapshot
    assert dest.mac(dst_vf) == ZERO_MAC  # left to the destination's agent

    adopted = dest.agent.reconcile()
    assert adopted.plugged == adopted.unplugged == adopted.failed == ()
    assert Operation.START not in dest.hypervisor.operations()  # not plugged twice
    assert dest.mac(dst_vf) == port_mac  # configured on adoption
    assert dest.agent.reconcile() == adopted  # nothing more to do
    assert source.agent.reconcile().unplugged == ()
    # a delete on the destination restores the destination VF from the adoption snapshot
    world.admin.delete_instance(vm.id)
    assert dest.agent.reconcile().unplugged == (vm.id,)
    assert dest.mac(dst_vf) == ZERO_MAC and dest.domains() == set()


@pytest.mark.parametrize("vnic", [VnicType.MACVTAP, VnicType.DIRECT])
@pytest.mark.parametrize("failing", ["destination define", "migrate"])
def test_fake_failed_migration_aborts_and_the_guest_stays_on_the_source(
    world: World, vnic: VnicType, failing: str
) -> None:
    vm, source, dest, src_vf, dst_vf = started(world, vnic)
    name = domain_name(vm.id)
    before = source.sources(name)
    port_mac = source.mac(src_vf)
    if failing == "migrate":
        source.hypervisor.fail(Operation.MIGRATE)
    else:
        dest.hypervisor.fail(Operation.DEFINE)
    assert VFS[dst_vf] in {a for a, owner in world.held(dest.name).items() if owner == vm.id}

    result = source.agent.reconcile()
    assert result.failed == () and result.plugged == ()
    migration = world.admin.show_migration(vm.id)
    assert migration.state == "aborted" and "injected failure" in (migration.reason or "")
    assert all(owner is None for owner in world.held(dest.name).values())  # claims freed
    assert world.admin.show_instance(vm.id).host == source.name
    assert source.hypervisor.state(name) is DomainState.RUNNING
    assert source.sources(name) == before  # direct port re-plugged on the source
    assert source.mac(src_vf) == port_mac  # VF intact
    assert dest.domains() == set() and dest.mac(dst_vf) == ZERO_MAC
    # the next cycles leave the guest as it is
    assert source.agent.reconcile().plugged == ()
    assert source.sources(name) == before


def test_fake_migration_executed_before_a_restart_is_reported_complete_not_rerun(
    world: World,
) -> None:
    vm, source, dest, _, _ = started(world, VnicType.DIRECT)
    name = domain_name(vm.id)
    desired = source.agent.client.desired_state(source.name).instances[0]
    assert desired.migration is not None
    assert desired.migration.destination_uri == dest.hypervisor.uri
    # the agent moves the guest and dies before reporting
    assert Migrator(HostApplier(VfManager(source.vfs), source.hypervisor)).run(desired).completed
    assert world.admin.show_migration(vm.id).state == "migrating"
    migrations = source.hypervisor.operations().count(Operation.MIGRATE)

    again = restart(source)
    assert again.agent.reconcile().failed == ()
    assert world.admin.show_migration(vm.id).state == "completed"
    assert source.hypervisor.operations().count(Operation.MIGRATE) == migrations
    assert dest.hypervisor.state(name) is DomainState.RUNNING
    assert dest.agent.reconcile().failed == ()
    assert Operation.START not in dest.hypervisor.operations()
