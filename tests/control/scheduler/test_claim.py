"""Schedule + claim in one transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

from conftest import GPU, Kit
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
