"""The demo scenario, run in-process into a fresh data directory, checked through the API.

One run (module fixture) serves every check; afterwards the test reopens the controller over
the demo's own database and asks the API what it holds, so the checks see what a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from pcifleet.client import AsgiApp, PcifleetClient
from pcifleet.control.api.app import create_app
from pcifleet.control.api.schemas.networks import PortOut
from pcifleet.control.audit import audit_database
from pcifleet.control.container import build_services
from pcifleet.control.services.principal import Role
from pcifleet.control.settings import settings_from_env, sqlite_url
from pcifleet.domain.device import DeviceState, DeviceType
from pcifleet.domain.errors import InvalidInput
from pcifleet.sim.demo import (
    DELETE_INSTANCE,
    DEMO_BOOTS,
    DEMO_NIC_BOOTS,
    DEMO_PROFILES,
    MIGRATE_INSTANCES,
    STEPS,
    BootsDone,
    ControllerStarted,
    Deleted,
    DemoContext,
    DemoRun,
    Explained,
    GuestPorts,
    HostsReported,
    Migrated,
    Migrations,
    NetworksAndPorts,
    Step,
    Utilization,
    prepare_data_dir,
    run_demo,
    summary,
)


def _fresh_root() -> Path:
    """On tmpfs when available: the demo writes thousands of small sysfs files."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="pcifleet-demo-test-", dir=base))


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    folder = _fresh_root()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def run(root: Path) -> DemoRun:
    return run_demo(root / "data")


@pytest.fixture(scope="module")
def api(run: DemoRun) -> Iterator[PcifleetClient]:
    """The API over the database the demo left behind (a new controller process would see
    the same)."""
    settings = settings_from_env({}, data_dir=run.data_dir, database_url=sqlite_url(run.data_dir))
    services = build_services(settings)
    _, token = services.tokens.create(Role.ADMIN, name="test")
    with PcifleetClient.in_process(cast(AsgiApp, create_app(services)), token) as client:
        yield client
    services.close()


def _boots(run: DemoRun) -> BootsDone:
    boots = run.results["boots"]
    assert isinstance(boots, BootsDone)
    return boots


def test_every_step_ran_in_order_with_its_record(run: DemoRun) -> None:
    assert list(run.results) == [step.key for step in STEPS]
    started = run.results["controller"]
    assert isinstance(started, ControllerStarted)
    assert started.auth_mode == "tokens"
    assert started.database_url == sqlite_url(run.data_dir)
    assert (run.data_dir / "pcifleet.db").is_file()


def test_hosts_are_reported_through_agent_tokens_with_two_numa_cells(
    run: DemoRun, api: PcifleetClient
) -> None:
    reported = run.results["hosts"]
    assert isinstance(reported, HostsReported)
    assert [h.profile for h in reported.hosts] == list(DEMO_PROFILES)
    agents = {t.host for t in api.list_tokens() if t.role == "agent"}
    assert agents == {h.name for h in reported.hosts}
    for host in reported.hosts:
        detail = api.show_host(host.name)
        assert len(detail.cells) == 2
        assert len(detail.devices) == host.assignable == host.added
        assert (host.root / "sys" / "bus" / "pci" / "devices").is_dir()


def test_the_management_nic_is_excluded_and_never_reported(
    run: DemoRun, api: PcifleetClient
) -> None:
    reported = run.results["hosts"]
    assert isinstance(reported, HostsReported)
    x710 = next(h for h in reported.hosts if h.profile == "demo-nfv-x710-qat")
    assert x710.excluded == ("0000:11:00.0 (eno1)",)
    addresses = {d.address for d in api.list_devices(host=x710.name)}
    assert "0000:11:00.0" not in addresses


def _networks(run: DemoRun) -> NetworksAndPorts:
    made = run.results["networks"]
    assert isinstance(made, NetworksAndPorts)
    return made


def _guest(run: DemoRun, name: str) -> GuestPorts:
    return next(g for g in _networks(run).guests if g.instance.name == name)


def test_networks_have_their_segments_and_the_qos_rate_is_rounded_with_a_note(
    run: DemoRun, api: PcifleetClient
) -> None:
    made = _networks(run)
    segments = {
        n.name: [(s.network_type, s.physical_network) for s in n.segments] for n in made.networks
    }
    assert segments == {
        "sriov-phys1": [("vlan", "physnet1")],
        "sriov-phys2": [("vlan", "physnet2")],
        "tenant-multi": [("vxlan", None), ("vlan", "physnet2")],
    }
    assert {n.name for n in api.list_networks()} == set(segments)
    qos = next(p for p in made.ports if p.name == "fw-mgmt")
    assert qos.qos_max_kbps == 1500
    assert qos.vf is not None and qos.vf.max_tx_rate_mbps == 2
    assert "1500 kbit/s is enforced as 2 Mbit/s" in qos.notes[0]
    assert all(p.binding is None for p in made.ports)  # made unbound, bound by the boots


def _bound_device(api: PcifleetClient, guest: GuestPorts, port: PortOut) -> tuple[str, str]:
    """The (host, address) the instance's request for ``port`` holds, checked against the
    binding."""
    vm = guest.instance
    (request,) = [r for r in vm.requests if r.requester == port.id]
    (address,) = request.devices
    assert port.binding is not None
    assert (port.binding.host, port.binding.profile["pci_slot"]) == (vm.host, address)
    assert port.instance_id == vm.id
    return (vm.host or "", address)


def test_guests_with_nics_are_bound_to_the_devices_they_hold(
    run: DemoRun, api: PcifleetClient
) -> None:
    guests = _networks(run).guests
    assert [g.instance.name for g in guests] == [b.name for b in DEMO_NIC_BOOTS]
    assert all(g.instance.state == "active" for g in guests)
    vnics = sorted(p.vnic_type for g in guests for p in g.ports)
    assert vnics == ["direct", "direct", "direct-physical", "macvtap", "macvtap"]
    held: set[tuple[str, str]] = set()
    for guest in guests:
        assert len(guest.ports) == len(guest.instance.requests)
        for port in guest.ports:
            where = _bound_device(api, guest, port)
            assert where not in held
            held.add(where)
            device = next(d for d in api.list_devices(host=where[0]) if d.address == where[1])
            _check_binding(port, device.dev_type, device.vf_index, device.tags)


def _check_binding(
    port: PortOut, dev_type: DeviceType, vf_index: int | None, tags: dict[str, str]
) -> None:
    assert port.binding is not None
    profile = port.binding.profile
    assert profile["physical_network"] == tags["physical_network"]
    assert port.binding.vif_details["vlan"] in {"1000", "2000", "2001"}
    if port.vnic_type == "direct-physical":
        assert dev_type is DeviceType.PF and port.binding.vif_type == "hostdev_physical"
        assert profile["device_mac_address"] == tags["mac_address"]
        return
    assert dev_type is DeviceType.VF and port.binding.vif_type == "hw_veb"
    assert profile["vf_num"] == vf_index
    assert profile["pf_mac_address"] == tags["pf_mac_address"]


def test_a_trusted_port_gets_a_trusted_vf_and_mixed_vnic_types_are_warned(run: DemoRun) -> None:
    firewall = _guest(run, "edge-fw-1")
    (uplink,) = [p for p in firewall.ports if p.name == "fw-uplink"]
    assert uplink.trusted and uplink.binding is not None
    assert uplink.binding.profile["trusted"] == "true"
    assert firewall.instance.host == "nfv-e810-01"  # the only host whose VFs are trusted
    assert "live migration will unplug the direct ports" in firewall.instance.warnings[0]
    others = [g for g in _networks(run).guests if g is not firewall]
    assert all(not g.instance.warnings for g in others)


def _migrated(run: DemoRun) -> dict[str, Migrated]:
    done = run.results["migrate"]
    assert isinstance(done, Migrations)
    return {m.before.name: m for m in done.guests}


def test_migration_plans_move_macvtap_transparently_and_unplug_direct_ports(
    run: DemoRun,
) -> None:
    migrated = _migrated(run)
    assert list(migrated) == list(MIGRATE_INSTANCES)
    actions = {
        name: [(i.vnic_type, i.action) for i in m.plan.items] for name, m in migrated.items()
    }
    assert actions == {
        "edge-lb-1": [("macvtap", "transparent")],
        "edge-dpdk-1": [("direct", "unplug-replug")],
    }
    for m in migrated.values():
        assert m.plan.allowed and not m.plan.refusal
        assert m.plan.source_host == m.before.host != m.plan.destination_host
        (item,) = m.plan.items
        assert item.source == [a for r in m.before.requests for a in r.devices]
        assert len(item.destination) == 1 and item.reason


def test_a_migration_claims_the_destination_first_then_frees_the_source(
    run: DemoRun, api: PcifleetClient
) -> None:
    for m in _migrated(run).values():
        source, destination = m.started.source_host, m.started.destination_host
        assert (m.started.state, m.finished.state) == ("migrating", "completed")
        assert source == m.before.host and destination == m.plan.destination_host
        assert {host for host, _, _ in m.in_flight} == {source, destination}
        assert {state for _, _, state in m.in_flight} == {"allocated"}
        vm = api.show_instance(m.before.id)
        assert vm.state == "active" and vm.host == destination
        after = {(destination, a) for r in vm.requests for a in r.devices}
        held = api.list_devices(instance_id=vm.id)
        assert {(d.host, d.address) for d in held} == after
        assert {d.state for d in held} == {DeviceState.ALLOCATED}
        states = {d.address: d.state for d in api.list_devices(host=source)}
        old = [a for r in m.before.requests for a in r.devices]
        assert old and all(states[a] is DeviceState.AVAILABLE for a in old)
        assert set(m.source_states.values()) == {"available"}
        for port in api.list_ports(instance=vm.id):
            assert port.binding is not None and port.binding.host == destination
            assert (destination, port.binding.profile["pci_slot"]) in after
        assert api.show_migration(vm.id).state == "completed"


def test_every_held_device_belongs_to_a_live_instance_on_its_host(
    run: DemoRun, api: PcifleetClient
) -> None:
    """The audit's first rule, read through the API after the whole scenario."""
    live = {vm.id: vm for vm in api.list_instances() if vm.state == "active"}
    holders: dict[str, set[tuple[str, str]]] = {}
    for device in api.list_devices():
        if device.state in (DeviceState.CLAIMED, DeviceState.ALLOCATED):
            assert device.instance_id in live, device.address
            assert live[device.instance_id].host == device.host
            holders.setdefault(device.instance_id, set()).add((device.host, device.address))
        else:
            assert device.instance_id is None
    for vm in live.values():
        listed = {(vm.host or "", a) for r in vm.requests for a in r.devices}
        assert holders.get(vm.id, set()) == listed, vm.name


def test_pcifleet_audit_finds_the_demo_database_clean(run: DemoRun) -> None:
    settings = settings_from_env({}, data_dir=run.data_dir, database_url=sqlite_url(run.data_dir))
    services = build_services(settings)
    try:
        report = audit_database(services.engine)
    finally:
        services.close()
    assert report.clean, report.violations
    assert report.held > 0


def test_placed_instances_hold_distinct_devices_in_the_api(
    run: DemoRun, api: PcifleetClient
) -> None:
    boots = _boots(run)
    assert len(boots.placed) == len(DEMO_BOOTS) - 1
    seen: set[tuple[str | None, str]] = set()
    for vm in boots.placed:
        assert vm.host is not None
        mine = {(vm.host, a) for r in vm.requests for a in r.devices}
        assert len(mine) == sum(r.count for r in vm.requests)
        assert not mine & seen, f"{vm.name} shares a device"
        seen |= mine
        if vm.name == DELETE_INSTANCE:
            continue
        held = api.list_devices(instance_id=vm.id)
        assert {(d.host, d.address) for d in held} == mine
        assert {d.state for d in held} <= {DeviceState.ALLOCATED}


def test_the_unplaceable_boot_is_in_error_with_an_actionable_reason(
    run: DemoRun, api: PcifleetClient
) -> None:
    (failed,) = _boots(run).failed
    assert failed.name == "train-huge"
    stored = api.show_instance(failed.id)
    assert stored.state == "error"
    assert stored.fault is not None
    assert stored.fault.code == "pcifleet.schedule.no_valid_host"
    assert "on one NUMA node under policy required" in stored.fault.message
    assert not any(r.devices for r in stored.requests)


def test_explain_chooses_a_host_and_claims_nothing(run: DemoRun, api: PcifleetClient) -> None:
    explained = run.results["explain"]
    assert isinstance(explained, Explained)
    result = explained.explanation
    assert result.chosen is not None
    assert result.hosts == len(DEMO_PROFILES)
    assert sum(len(g.examples) for g in result.groups) == result.hosts
    chosen = {a for r in result.chosen.requests for a in r.devices}
    states = {d.address: d.state for d in api.list_devices(host=result.chosen.host)}
    assert chosen and all(states[a] is DeviceState.AVAILABLE for a in chosen)
    assert all(vm.name != explained.name for vm in api.list_instances())


def test_delete_frees_the_devices(run: DemoRun, api: PcifleetClient) -> None:
    deleted = run.results["delete"]
    assert isinstance(deleted, Deleted)
    assert deleted.instance.name == DELETE_INSTANCE
    assert deleted.instance.state == "deleted"
    assert deleted.freed and {f.state for f in deleted.freed} == {"available"}
    states = {d.address: d.state for d in api.list_devices(host=deleted.instance.host)}
    assert all(states[f.address] is DeviceState.AVAILABLE for f in deleted.freed)
    assert _used(deleted.after, "GPUs") == _used(deleted.before, "GPUs") - len(deleted.freed)
    assert _vcpus(deleted.after) == _vcpus(deleted.before) - deleted.instance.vcpus


def _used(usage: Utilization, kind: str) -> int:
    return sum(cell.devices[kind][0] for cell in usage.cells)


def _vcpus(usage: Utilization) -> int:
    return sum(cell.vcpus_used for cell in usage.cells)


def test_utilization_counts_what_the_placements_hold(run: DemoRun) -> None:
    usage = run.results["utilization"]
    assert isinstance(usage, Utilization)
    placed = _boots(run).placed + tuple(g.instance for g in _networks(run).guests)
    pinned = sum(c.vcpus for vm in placed for c in vm.cells)
    floating = sum(vm.vcpus for vm in placed if not vm.cells)
    assert _vcpus(usage) == pinned
    assert sum(usage.floating_vcpus.values()) == floating
    gpus = sum(r.count for vm in placed for r in vm.requests if r.requester == "gpu")
    assert _used(usage, "GPUs") == gpus
    vfs = [p for g in _networks(run).guests for p in g.ports if p.vnic_type != "direct-physical"]
    assert _used(usage, "NIC VFs") == len(vfs)
    assert len(usage.cells) == 2 * len(DEMO_PROFILES)


def test_summary_is_plain_json(run: DemoRun) -> None:
    document = json.loads(json.dumps(summary(run)))
    assert document["data_dir"] == str(run.data_dir)
    assert len(document["placements"]) == len(_boots(run).placed)
    assert document["failures"][0]["code"] == "pcifleet.schedule.no_valid_host"
    assert document["delete"]["instance"] == DELETE_INSTANCE
    migrations = {m["instance"]: m for m in document["migrations"]}
    assert list(migrations) == list(MIGRATE_INSTANCES)
    assert {m["state"] for m in migrations.values()} == {"completed"}
    assert migrations["edge-lb-1"]["plan"]["items"][0]["action"] == "transparent"
    assert len(document["bindings"]) == sum(len(n.nics) for n in DEMO_NIC_BOOTS)
    assert set(document["utilization"]) == {"before_delete", "after_delete"}


def test_a_new_step_slots_in(root: Path) -> None:
    seen: list[str] = []

    def extra(ctx: DemoContext) -> str:
        seen.append(ctx.admin.health().status)
        return "ports would go here"

    steps = (STEPS[0], Step("extra", "An extra step", extra))
    result = run_demo(root / "slot", steps=steps)
    assert result.results["extra"] == "ports would go here"
    assert seen == ["ok"]


@pytest.mark.parametrize(
    ("prepare", "fresh"),
    [
        (lambda p: None, True),
        (lambda p: p.mkdir(), True),
        (lambda p: (p.mkdir(), (p / "pcifleet.db").write_text("")), False),
        (lambda p: p.write_text("a file"), False),
    ],
    ids=["absent", "empty", "not-empty", "a-file"],
)
def test_data_dir_must_be_fresh(
    tmp_path: Path, prepare: Callable[[Path], object], fresh: bool
) -> None:
    target = tmp_path / "data"
    prepare(target)
    if fresh:
        assert prepare_data_dir(target) == target.resolve()
        assert target.is_dir()
    else:
        with pytest.raises(InvalidInput) as caught:
            prepare_data_dir(target)
        assert caught.value.fields["field"] == "data_dir"
        assert "new or empty directory" in str(caught.value)


def test_default_data_dir_is_a_new_temporary_directory() -> None:
    first, second = prepare_data_dir(None), prepare_data_dir(None)
    try:
        assert first != second
        assert not any(first.iterdir())
    finally:
        first.rmdir()
        second.rmdir()
