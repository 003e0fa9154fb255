"""Schedule + claim in one transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

from sched_kit import GPU, Kit
from sqlalchemy import select

from pcifleet.control.db.models import DeviceRow, HostRow
from pcifleet.control.scheduler.codec import InstanceState
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.domain.device import DeviceState


def states(kit: Kit, host_id: str) -> dict[str, tuple[str, str | None]]:
    with kit.sessions() as session:
        rows = session.execute(
            select(DeviceRow.address, DeviceRow.state, DeviceRow.instance_id).where(
                DeviceRow.host_id == host_id
            )
        )
        return {address: (state, owner) for address, state, owner in rows}


def generation(kit: Kit, host_id: str) -> int:
    with kit.sessions() as session:
        return session.get_one(HostRow, host_id).generation


def test_boot_claims_the_gpu_and_bumps_the_generation(kit: Kit) -> None:
    host_id = kit.add_host("h1")
    before = generation(kit, host_id)
    vm = kit.instances.boot(LOCAL_ADMIN, "vm1", "gpu")
    assert vm.state is InstanceState.ACTIVE, vm.fault
    assert vm.host == "h1"
    assert [str(a) for a in vm.devices[0].devices] == [GPU]
    assert states(kit, host_id)[GPU] == (DeviceState.ALLOCATED.value, vm.id)
    assert generation(kit, host_id) == before + 1


def test_delete_frees_devices_and_relatives(kit: Kit) -> None:
    host_id = kit.add_host("h1")
    vm = kit.instances.boot(LOCAL_ADMIN, "vm1", "pf")
    pf = str(vm.devices[0].devices[0])
    held = states(kit, host_id)
    assert held[pf] == (DeviceState.ALLOCATED.value, vm.id)
    vf_states = {s for a, (s, _) in held.items() if a.startswith(pf[:8]) and a != pf}
    assert vf_states == {DeviceState.UNAVAILABLE.value}
    gone = kit.instances.delete(LOCAL_ADMIN, vm.id)
    assert gone.state is InstanceState.DELETED
    assert {s for s, _ in states(kit, host_id).values()} == {DeviceState.AVAILABLE.value}


def test_no_valid_host_puts_the_instance_in_error_with_reasons_per_stage(kit: Kit) -> None:
    kit.add_host("h1")
    kit.add_host("h2", devices=[])
    down = kit.add_host("h3")
    kit.inventory.set_disabled(down, True, "maintenance")
    kit.instances.boot(LOCAL_ADMIN, "vm1", "two-vf")  # takes 2 of 4 physnet2 VFs on h1
    kit.instances.boot(LOCAL_ADMIN, "vm2", "two-vf")
    vm = kit.instances.boot(LOCAL_ADMIN, "vm3", "two-vf")
    assert vm.state is InstanceState.ERROR
    assert vm.host is None and vm.placement is None
    assert vm.fault is not None
    assert vm.fault.code == "pcifleet.schedule.no_valid_host"
    assert "3 hosts: 1 down or disabled; 2 had fewer than 2 free VFs on physnet2" in (
        vm.fault.message
    )
    assert any(line.startswith("1 down or disabled (e.g. h3") for line in vm.fault.details)
    stored = kit.instances.show(LOCAL_ADMIN, vm.id)
    assert stored.state is InstanceState.ERROR and stored.fault == vm.fault


def test_required_numa_policy_failure_is_reported_as_such(kit: Kit) -> None:
    kit.add_host("h1")
    kit.flavor(
        "vf2-node0",
        pci_passthrough__alias="vf2:1",
        hw__numa_nodes="1",
        hw__pci_numa_affinity_policy="required",
        vcpus=8,
    )
    # 8 vCPUs fill cell 1 entirely; vCPUs of a second guest only fit on cell 0, which has
    # no physnet2 VFs
    first = kit.instances.boot(LOCAL_ADMIN, "vm1", "vf2-node0")
    assert first.state is InstanceState.ACTIVE and first.host_cells == (1,)
    vm = kit.instances.boot(LOCAL_ADMIN, "vm2", "vf2-node0")
    assert vm.fault is not None
    assert (
        "had fewer than 1 free VFs on physnet2 on one NUMA node under policy required"
        in (vm.fault.message)
        or "had too few free vCPUs" in vm.fault.message
    )


def test_explain_claims_nothing_and_reports_every_host(kit: Kit) -> None:
    h1 = kit.add_host("h1")
    kit.add_host("h2", devices=[])
    result = kit.instances.explain(LOCAL_ADMIN, "gpu")
    explanation = result.explanation
    assert explanation.chosen is not None and explanation.chosen.host == "h1"
    assert explanation.chosen.placement is not None
    assert explanation.passed == 1
    assert result.summary.hosts == 2
    assert result.summary.sentence == "2 hosts: 1 had fewer than 1 free devices of group gpu"
    assert {s for s, _ in states(kit, h1).values()} == {DeviceState.AVAILABLE.value}
    assert kit.instances.list(LOCAL_ADMIN) == []


def test_a_stale_cached_view_is_reloaded_inside_the_claim(kit: Kit) -> None:
    host_id = kit.add_host("h1")
    kit.instances.boot(LOCAL_ADMIN, "vm1", "gpu")
    # another process frees the GPU: the generation moves, this index does not know
    with kit.sessions.begin() as session:
        session.execute(
            DeviceRow.__table__.update()
            .where(DeviceRow.host_id == host_id, DeviceRow.address == GPU)
            .values(state=DeviceState.AVAILABLE.value, instance_id=None)
        )
        session.execute(
            HostRow.__table__.update()
            .where(HostRow.id == host_id)
            .values(generation=HostRow.generation + 1)
        )
    vm = kit.instances.boot(LOCAL_ADMIN, "vm2", "gpu")
    assert vm.state is InstanceState.ACTIVE and vm.host == "h1"
