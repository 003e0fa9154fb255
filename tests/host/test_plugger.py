"""The agent's HostApplier against a fake VF configurator and a fake hypervisor.

The machine has no SR-IOV NIC and no KVM, so VF writes go to FakeVfConfigurator and domains to
FakeHypervisor (both fakes of the OS boundary, with the real ones' behaviour and errors); the
applier, the VF manager, the renderer and the agent's reconcile are the real code.
"""

from __future__ import annotations

import errno
import uuid

import pytest
from plugger_kit import GPU, PF, Host, instance, port

from pcifleet.domain.errors import PlugFailed
from pcifleet.host.agent import Plugged, reconcile
from pcifleet.host.hypervisor import Operation
from pcifleet.host.libvirt import DomainSpec, render_domain
from pcifleet.host.libvirt.devices import Element
from pcifleet.host.plugger import HostApplier, domain_name, read_metadata
from pcifleet.host.vf.model import LinkState, VfField, VfState, VlanTag
from pcifleet.host.vf.service import VfManager


@pytest.fixture
def host() -> Host:
    return Host()


def test_plug_configures_vfs_before_defining_the_domain_fake_vf_fake_hypervisor(
    host: Host,
) -> None:
    seen: list[VfState] = []

    def render(spec: DomainSpec) -> Element:
        seen.append(host.vfs.read(PF, 1))
        return render_domain(spec)

    applier = HostApplier(host.manager, host.hypervisor, render=render)
    vm = instance(port(1), port(2, "macvtap"))
    done = reconcile(applier, [vm])
    assert done.plugged == (vm.id,)
    assert seen[0].mac == "fa:16:3e:00:00:01"  # configured when the domain was rendered
    assert host.hypervisor.operations() == [Operation.LIST, Operation.DEFINE, Operation.START]
    vf1 = host.vfs.read(PF, 1)
    assert (vf1.vlan, vf1.max_tx_rate, vf1.trust, vf1.link_state) == (
        VlanTag(1001),
        100,
        True,
        LinkState.ENABLE,
    )
    xml = host.hypervisor.xml(domain_name(vm.id))
    assert "<interface type='direct'>" in xml.replace('"', "'")
    assert 'mode="passthrough"' in xml and f'dev="{PF}v2"' in xml
    assert 'managed="no"' in xml  # the GPU's managed tag
    keys = {k for d in host.hypervisor.devices(domain_name(vm.id)) for k in d.keys}
    assert ("pci", GPU) in keys and ("pci", "0000:18:02.1") in keys


def test_reapplying_the_same_desired_state_makes_no_calls_fake(host: Host) -> None:
    vm = instance(port(1))
    reconcile(host.applier, [vm])
    writes, calls = len(host.vfs.writes), len(host.hypervisor.calls)
    again = reconcile(host.applier, [vm])
    assert (again.plugged, again.unplugged, again.updated) == ((), (), ())
    assert len(host.vfs.writes) == writes
    assert [c.operation for c in host.hypervisor.calls[calls:]] == [Operation.LIST]


def test_a_failed_vf_write_restores_the_vfs_and_defines_nothing_fake(host: Host) -> None:
    host.vfs.fail(PF, 2, VfField.VLAN, errno.EINVAL)
    vm = instance(port(1), port(2))
    with pytest.raises(PlugFailed) as caught:
        host.applier.plug(Plugged.of(vm))
    assert caught.value.fields["step"] == "vf"
    assert host.table() == host.initial
    assert host.domains() == []
    assert host.manager.held() == ()
    # the agent's reconcile reports it and goes on; the next cycle succeeds
    assert reconcile(host.applier, [vm]).plugged == (vm.id,)


@pytest.mark.parametrize(
    ("operation", "step"), [(Operation.DEFINE, "define"), (Operation.START, "start")]
)
def test_a_failed_define_or_start_rolls_everything_back_fake(
    host: Host, operation: Operation, step: str
) -> None:
    host.hypervisor.fail(operation)
    vm = instance(port(1), port(3, "macvtap"))
    done = reconcile(host.applier, [vm])
    assert (done.plugged, done.failed) == ((), (vm.id,))
    assert host.table() == host.initial
    assert host.domains() == []
    assert host.manager.held() == ()
    with pytest.raises(PlugFailed) as caught:
        host.hypervisor.fail(operation)
        host.applier.plug(Plugged.of(vm))
    assert caught.value.fields["step"] == step


def test_unplug_restores_the_vfs_including_a_mac_the_guest_changed_fake(host: Host) -> None:
    vm = instance(port(1), port(2))
    reconcile(host.applier, [vm])
    host.vfs.guest_sets_mac(PF, 1, "fa:16:3e:99:99:99")
    done = reconcile(host.applier, [])
    assert done.unplugged == (vm.id,)
    ops = host.hypervisor.operations()
    assert ops[-3:] == [Operation.STATE, Operation.STOP, Operation.UNDEFINE]
    assert host.table() == host.initial
    assert host.domains() == []


def test_hot_plug_and_unplug_of_a_port_on_the_running_domain_fake(host: Host) -> None:
    vm_id = str(uuid.uuid4())
    one = instance(port(1), instance_id=vm_id)
    two = instance(port(1), port(4), instance_id=vm_id)
    reconcile(host.applier, [one])
    grown = reconcile(host.applier, [two])
    assert (grown.updated, grown.plugged, grown.unplugged) == ((vm_id,), (), ())
    assert Operation.ATTACH in host.hypervisor.operations()
    assert host.vfs.read(PF, 4).mac == "fa:16:3e:00:00:04"
    name = domain_name(vm_id)
    assert ("pci", "0000:18:02.4") in {k for d in host.hypervisor.devices(name) for k in d.keys}
    found = read_metadata(host.hypervisor.xml(name))
    assert found is not None and found.plugged == Plugged.of(two)
    shrunk = reconcile(host.applier, [one])
    assert shrunk.updated == (vm_id,)
    assert Operation.DETACH in host.hypervisor.operations()
    assert host.vfs.read(PF, 4) == host.initial[4]
    assert ("pci", "0000:18:02.4") not in {k for d in host.hypervisor.devices(name) for k in d.keys}


def test_a_failed_hot_plug_restores_the_new_vf_fake(host: Host) -> None:
    vm_id = str(uuid.uuid4())
    reconcile(host.applier, [instance(port(1), instance_id=vm_id)])
    host.hypervisor.fail(Operation.ATTACH)
    done = reconcile(host.applier, [instance(port(1), port(5), instance_id=vm_id)])
    assert done.failed == (vm_id,)
    assert host.vfs.read(PF, 5) == host.initial[5]
    assert host.manager.held() == ((PF, 1),)


def test_a_restarted_agent_reconciles_from_the_domain_list_fake(host: Host) -> None:
    vm = instance(port(1))
    reconcile(host.applier, [vm])
    # a new agent process: new applier and VF manager, same hypervisor and NIC
    restarted = HostApplier(VfManager(host.vfs), host.hypervisor)
    assert restarted.found() == {vm.id: Plugged.of(vm)}
    calls = len(host.hypervisor.calls)
    assert reconcile(restarted, [vm]).plugged == ()
    assert Operation.DEFINE not in [c.operation for c in host.hypervisor.calls[calls:]]
    assert reconcile(restarted, []).unplugged == (vm.id,)
    assert host.domains() == []


def test_domains_pcifleet_did_not_define_are_left_alone_fake(host: Host) -> None:
    host.hypervisor.define(
        "<domain type='kvm'><name>someone-else</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    assert host.applier.found() == {}
    reconcile(host.applier, [])
    assert host.domains() == ["someone-else"]
