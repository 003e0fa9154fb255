"""VF snapshots outlive the agent: kept in the domain's metadata, adopted after a restart.

A "restart" here is a new ``HostApplier`` over a new ``VfManager`` (what a new agent process
builds) sharing the old one's fake hypervisor and fake VF configurator (the machine has no
SR-IOV NIC and no KVM, so both are fakes of the OS boundary); everything else is real code.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from plugger_kit import PF, Host, instance, port

from pcifleet.domain.errors import InvalidVfSetting, VfError
from pcifleet.host.agent import Plugged, Reconciliation, reconcile
from pcifleet.host.hypervisor.fake_file import FileBackedFakeHypervisor
from pcifleet.host.plugger import HostApplier, domain_name, read_metadata
from pcifleet.host.vf.fake_file import FileBackedFakeVfConfigurator
from pcifleet.host.vf.model import (
    LinkState,
    TxRate,
    VfField,
    VfSettings,
    VfState,
    VlanProto,
    VlanTag,
    settings_from_state,
)
from pcifleet.host.vf.service import VfManager
from pcifleet.host.vf.snapshot import snapshot_attributes, snapshot_from_attributes


@pytest.fixture
def host() -> Host:
    return Host()


def restart(host: Host) -> HostApplier:
    """A new agent process: fresh applier and VF manager, the same hypervisor and NIC."""
    return HostApplier(VfManager(host.vfs), host.hypervisor)


# --- the snapshot format ----------------------------------------------------------------------

STATES = [
    VfState(index=0),
    VfState(index=3, mac="fa:16:3e:00:00:07", spoofchk=None, trust=None),
    VfState(
        index=5,
        mac="02:00:00:00:00:01",
        vlan=VlanTag(vid=4094, qos=7, proto=VlanProto.DOT1AD),
        rate=TxRate(100, 1000),
        spoofchk=False,
        trust=True,
        link_state=LinkState.DISABLE,
    ),
]


@pytest.mark.parametrize("state", STATES, ids=["defaults", "hidden-flags", "everything-set"])
def test_a_snapshot_reads_back_as_written_fake(state: VfState) -> None:
    assert snapshot_from_attributes(snapshot_attributes(state), state.index) == state


@given(
    index=st.integers(0, 255),
    mac=st.binary(min_size=6, max_size=6),
    vid=st.integers(0, 4095),
    qos=st.integers(0, 7),
    proto=st.sampled_from(VlanProto),
    rates=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(sorted),
    spoofchk=st.sampled_from([True, False, None]),
    trust=st.sampled_from([True, False, None]),
    link=st.sampled_from(LinkState),
)
def test_every_vf_state_survives_the_attribute_round_trip(
    index: int,
    mac: bytes,
    vid: int,
    qos: int,
    proto: VlanProto,
    rates: list[int],
    spoofchk: bool | None,
    trust: bool | None,
    link: LinkState,
) -> None:
    state = VfState(
        index=index,
        mac=":".join(f"{b:02x}" for b in mac),
        vlan=VlanTag(vid, qos, proto),
        rate=TxRate(rates[0], rates[1]),
        spoofchk=spoofchk,
        trust=trust,
        link_state=link,
    )
    attributes = snapshot_attributes(state)
    assert all(isinstance(v, str) for v in attributes.values())
    assert snapshot_from_attributes(attributes, index) == state


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"mac": None}, "mac", "required"),
        ({"mac": "nonsense"}, "mac", "format"),
        ({"vlan": "-1"}, "vlan", "integer"),
        ({"vlan": "4096"}, "vlan", "range"),
        ({"qos": "x"}, "qos", "integer"),
        ({"proto": "802.1x"}, "proto", "choice"),
        ({"min-tx-rate": "200", "max-tx-rate": "100"}, "min_tx_rate", "min_above_max"),
        ({"spoofchk": "yes"}, "spoofchk", "boolean"),
        ({"link-state": "up"}, "link-state", "choice"),
    ],
)
def test_a_bad_snapshot_names_the_attribute_and_the_rule(
    change: dict[str, str | None], field: str, rule: str
) -> None:
    attributes = snapshot_attributes(STATES[2])
    for name, value in change.items():
        if value is None:
            del attributes[name]
        else:
            attributes[name] = value
    with pytest.raises(InvalidVfSetting) as caught:
        snapshot_from_attributes(attributes, 5)
    assert (caught.value.fields["field"], caught.value.fields["rule"]) == (field, rule)


# --- VfManager.adopt ----------------------------------------------------------------------------


def test_adopt_holds_the_vf_and_release_restores_the_adopted_snapshot_fake(host: Host) -> None:
    original = host.vfs.read(PF, 2)
    changed = VfState(index=2, mac="fa:16:3e:12:34:56", vlan=VlanTag(vid=100), trust=True)
    host.vfs.apply(PF, 2, _settings_of(changed))
    manager = VfManager(host.vfs)
    assert manager.adopt(PF, 2, original) is True
    assert manager.held() == ((PF, 2),)
    released = manager.release(PF, 2)
    assert host.vfs.read(PF, 2) == original
    assert set(released.written) == {VfField.MAC, VfField.VLAN, VfField.TRUST}
    assert manager.held() == ()


def test_adopt_keeps_a_snapshot_already_held_fake(host: Host) -> None:
    manager = VfManager(host.vfs)
    own = host.vfs.read(PF, 1)
    manager.configure(PF, 1, _settings_of(VfState(index=1, mac="fa:16:3e:00:00:01")))
    writes = len(host.vfs.writes)
    assert manager.adopt(PF, 1, VfState(index=1, mac="02:00:00:00:00:09")) is False
    assert manager.snapshot(PF, 1) == own
    assert len(host.vfs.writes) == writes


def test_adopt_refuses_a_snapshot_of_another_vf_fake(host: Host) -> None:
    with pytest.raises(VfError) as caught:
        VfManager(host.vfs).adopt(PF, 1, VfState(index=2))
    assert caught.value.fields["rule"] == "snapshot_index"


def _settings_of(state: VfState) -> VfSettings:
    return settings_from_state(state, (VfField.MAC, VfField.VLAN, VfField.TRUST))


# --- the applier across a restart ----------------------------------------------------------------


def test_the_domain_metadata_keeps_each_vfs_pre_plug_snapshot_fake(host: Host) -> None:
    vm = instance(port(1), port(2))
    reconcile(host.applier, [vm])
    found = read_metadata(host.hypervisor.xml(domain_name(vm.id)))
    assert found is not None
    assert dict((s.index, (pf, s)) for pf, s in found.snapshots) == {
        1: (PF, host.initial[1]),
        2: (PF, host.initial[2]),
    }


def test_a_restarted_agent_restores_the_vfs_it_plugged_before_the_restart_fake(
    host: Host,
) -> None:
    vm = instance(port(1), port(2))
    reconcile(host.applier, [vm])
    host.vfs.guest_sets_mac(PF, 1, "fa:16:3e:99:99:99")
    restarted = restart(host)
    assert reconcile(restarted, [vm]).plugged == ()
    assert restarted.vf_manager.held() == ((PF, 1), (PF, 2))
    assert reconcile(restarted, []).unplugged == (vm.id,)
    assert host.table() == host.initial
    assert restarted.vf_manager.held() == ()
    assert host.domains() == []


def test_restarting_twice_before_the_unplug_still_restores_the_vfs_fake(host: Host) -> None:
    vm = instance(port(3))
    reconcile(host.applier, [vm])
    reconcile(restart(host), [vm])
    last = restart(host)
    assert reconcile(last, []).unplugged == (vm.id,)
    assert host.table() == host.initial


def test_a_port_hot_plugged_before_the_restart_is_restored_after_it_fake(host: Host) -> None:
    vm_id = str(uuid.uuid4())
    reconcile(host.applier, [instance(port(1), instance_id=vm_id)])
    grown = instance(port(1), port(4), instance_id=vm_id)
    assert reconcile(host.applier, [grown]).updated == (vm_id,)
    host.vfs.guest_sets_mac(PF, 4, "fa:16:3e:44:44:44")
    restarted = restart(host)
    assert restarted.found() == {vm_id: Plugged.of(grown)}
    assert reconcile(restarted, []).unplugged == (vm_id,)
    assert host.table() == host.initial


def test_an_unreadable_snapshot_is_logged_and_the_unplug_still_happens_fake(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    vm = instance(port(1))
    reconcile(host.applier, [vm])
    name = domain_name(vm.id)
    broken = host.hypervisor.xml(name).replace('vlan="0"', 'vlan="many"')
    assert broken != host.hypervisor.xml(name)
    host.hypervisor.define(broken)
    restarted = restart(host)
    with caplog.at_level(logging.ERROR, logger="pcifleet.agent.plug"):
        assert reconcile(restarted, []).unplugged == (vm.id,)
    assert "stored snapshot unreadable" in caplog.text and "vlan" in caplog.text
    assert host.domains() == []
    assert host.vfs.read(PF, 1).mac == "fa:16:3e:00:00:01"


def test_an_agent_rebuilt_from_the_state_files_restores_the_vfs_fake_file(
    tmp_path: Path,
) -> None:
    """Nothing shared in memory: the second applier is built from the fakes' files alone."""

    def applier() -> tuple[HostApplier, FileBackedFakeVfConfigurator]:
        vfs = FileBackedFakeVfConfigurator(tmp_path / "vfs.json")
        if not vfs.loaded:
            vfs.add_pf(PF, 8)
        hypervisor = FileBackedFakeHypervisor(tmp_path / "hypervisor.json")
        return HostApplier(VfManager(vfs), hypervisor), vfs

    first, vfs = applier()
    initial = [vfs.read(PF, i) for i in range(8)]
    vm = instance(port(2), port(6))
    reconcile(first, [vm])
    vfs.guest_sets_mac(PF, 6, "fa:16:3e:66:66:66")
    second, vfs = applier()
    assert reconcile(second, [vm]) == Reconciliation()
    assert [d.name for d in second.hypervisor.list_domains()] == [domain_name(vm.id)]
    assert reconcile(second, []).unplugged == (vm.id,)
    third, vfs = applier()
    assert [vfs.read(PF, i) for i in range(8)] == initial
    assert third.hypervisor.list_domains() == ()
