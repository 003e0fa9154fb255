"""The agent's migration executor on two fake hypervisor peers and fake VF configurators:
unplug, move with rewritten devices, plug back; rollback before the move; failures after."""

from __future__ import annotations

from dataclasses import dataclass

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import HypervisorError
from pcifleet.domain.migration import MigrationItem, MigrationPlan, PortInfo, plan_migration
from pcifleet.domain.placement import Placement
from pcifleet.domain.vnic import VnicType, port_device_request
from pcifleet.host.hypervisor.driver import DomainState, Operation
from pcifleet.host.hypervisor.fake import FakeHypervisor
from pcifleet.host.migrate import Outcome, VfTarget, execute_migration
from pcifleet.host.vf.fake import FakeVfConfigurator
from pcifleet.host.vf.model import VfSettings

SRC_MV, SRC_DP = PciAddress.parse("0000:3b:02.0"), PciAddress.parse("0000:3b:02.1")
DST_MV, DST_DP = PciAddress.parse("0000:5e:02.3"), PciAddress.parse("0000:5e:02.4")
MACS = {"mv": "fa:16:3e:00:00:01", "dp": "fa:16:3e:00:00:02"}


def _pci(address: PciAddress) -> str:
    return (
        f"<address type='pci' domain='0x{address.domain:04x}' bus='0x{address.bus:02x}' "
        f"slot='0x{address.slot:02x}' function='0x{address.function}'/>"
    )


@dataclass
class Renderer:
    """A small stand-in for pcifleet's libvirt renderers (hostdev interface, macvtap)."""

    domain_name: str = "vm"

    def _netdev(self, address: PciAddress) -> str:
        return f"vf{address.slot}{address.function}"

    def _interface(self, item: MigrationItem, address: PciAddress) -> str:
        mac = f"<mac address='{MACS[item.requester.name]}'/>"
        if item.vnic_type is VnicType.MACVTAP:
            return (
                f"<interface type='direct'>{mac}<source dev='{self._netdev(address)}' "
                "mode='passthrough'/><model type='virtio'/></interface>"
            )
        source = f"<source>{_pci(address)}</source>"
        return f"<interface type='hostdev' managed='yes'>{mac}{source}</interface>"

    def fragment(self, item: MigrationItem, destination: bool) -> str:
        return self._interface(item, (item.destination if destination else item.source)[0])

    def domain(self, plan: MigrationPlan, destination: bool, skip_unplugged: bool) -> str:
        devices = "".join(
            self.fragment(i, destination)
            for i in plan.items
            if not (skip_unplugged and i.action.value == "unplug-replug")
        )
        return (
            "<domain type='kvm'><name>vm</name><uuid>6c2c8a8e-3f3a-4d0c-9d8f-1f2e3d4c5b6a</uuid>"
            f"<memory unit='KiB'>1048576</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
            f"<devices>{devices}</devices></domain>"
        )

    def destination_xml(self, plan: MigrationPlan) -> str:
        return self.domain(plan, True, True)

    def vf(self, item: MigrationItem, destination: bool) -> VfTarget | None:
        address = (item.destination if destination else item.source)[0]
        return VfTarget("ens5f0", address.function, VfSettings(mac=MACS[item.requester.name]))


def plan() -> MigrationPlan:
    requests = [
        port_device_request(VnicType.MACVTAP, "physnet1", None, "mv"),
        port_device_request(VnicType.DIRECT, "physnet1", None, "dp"),
    ]
    ports = [PortInfo("mv", VnicType.MACVTAP), PortInfo("dp", VnicType.DIRECT)]
    base = plan_migration(
        "vm", [r for r in requests if r], [(SRC_MV,), (SRC_DP,)], ports, source_host="h1"
    )
    return base.with_destination("h2", Placement("vm", (), ((DST_MV,), (DST_DP,))))


def fakes() -> tuple[FakeHypervisor, FakeHypervisor, FakeVfConfigurator, Renderer]:
    dest = FakeHypervisor("fake://h2/")
    source = FakeHypervisor("fake://h1/", peers={dest.uri: dest})
    vfs = FakeVfConfigurator()
    vfs.add_pf("ens5f0", 8)
    render = Renderer()
    source.define(render.domain(plan(), False, False))
    source.start("vm")
    return source, dest, vfs, render


def sources(hypervisor: FakeHypervisor) -> set[str]:
    return {
        value
        for device in hypervisor.devices("vm")
        for kind, value in device.keys
        if kind in ("pci", "direct-dev")
    }


def test_fake_peers_migrate_unplug_and_replug_with_rewritten_devices() -> None:
    source, dest, vfs, render = fakes()
    result = execute_migration(plan(), source, dest, dest.uri, vfs, render)
    assert result.outcome is Outcome.COMPLETED and result.errors == (), result
    assert "vm" not in {d.name for d in source.list_domains()}
    assert dest.state("vm") is DomainState.RUNNING
    assert sources(dest) == {"vf23", str(DST_DP)}  # macvtap netdev and hostdev rewritten
    moves = {Operation.DETACH, Operation.MIGRATE, Operation.ATTACH}
    assert [o for o in source.operations() if o in moves] == [Operation.DETACH, Operation.MIGRATE]
    assert [o for o in dest.operations() if o in moves] == [Operation.ATTACH]
    assert vfs.read("ens5f0", DST_MV.function).mac == MACS["mv"]
    assert vfs.read("ens5f0", DST_DP.function).mac == MACS["dp"]


def test_fake_migration_failure_replugs_on_the_source_and_restores_the_vfs() -> None:
    source, dest, vfs, render = fakes()
    source.fail(Operation.MIGRATE, HypervisorError("migration job: unexpectedly failed"))
    result = execute_migration(plan(), source, dest, dest.uri, vfs, render)
    assert result.outcome is Outcome.ABORTED and "unexpectedly failed" in result.reason
    assert result.errors == ()
    assert source.state("vm") is DomainState.RUNNING
    assert sources(source) == {"vf20", str(SRC_DP)}  # the direct port is back
    assert dest.list_domains() == ()
    assert vfs.read("ens5f0", DST_DP.function).mac == "00:00:00:00:00:00"


def test_fake_replug_failure_on_the_destination_still_completes() -> None:
    source, dest, vfs, render = fakes()
    dest.fail(Operation.ATTACH, HypervisorError("no IOMMU group"))
    result = execute_migration(plan(), source, dest, dest.uri, vfs, render)
    assert result.completed and dest.state("vm") is DomainState.RUNNING
    assert len(result.errors) == 1 and "port dp" in result.errors[0]


def test_fake_refused_plan_touches_nothing() -> None:
    source, dest, vfs, render = fakes()
    refused = plan_migration("vm", [], [], [PortInfo("bm", VnicType.BAREMETAL)])
    result = execute_migration(refused, source, dest, dest.uri, vfs, render)
    assert result.outcome is Outcome.ABORTED and "baremetal" in result.reason
    assert source.operations() == [Operation.DEFINE, Operation.START]
