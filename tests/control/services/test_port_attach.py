"""Attach and detach ports on running instances, on SQLite and PostgreSQL.

The devices are claimed on the instance's host only, in one transaction with its generation
compare-and-swap; detach and delete free them with their PF/VF relatives; the database audit
finds nothing wrong afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from pcifleet.control.audit import audit_database
from pcifleet.control.container import Services, build_services
from pcifleet.control.db.models import DeviceRow, HostRow
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.instances import InstanceRecord
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.networks import NetworkOptions, Nic
from pcifleet.control.services.principal import LOCAL_ADMIN, Principal, Role
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.errors import InvalidInput, NotFound
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.request import RequesterKind
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import VnicType
from pcifleet.network.errors import (
    InstanceNotRunning,
    MixedVnicTypes,
    NoDeviceOnHost,
    PortInUse,
)
from pcifleet.network.policy import MixedVnicPolicy
from pcifleet.network.segments import NetworkType, SegmentSpec

PF = PciAddress.parse("0000:3b:00.0")
VFS = (PF.offset(16), PF.offset(17))
ALICE = Principal(Role.MEMBER, project="alice")
BOB = Principal(Role.MEMBER, project="bob")
VLAN = SegmentSpec(NetworkType.VLAN, "physnet1")


def nic() -> list[Device]:
    tags = Tags({"physical_network": "physnet1"})
    pf_tags = Tags({"physical_network": "physnet1", "mac_address": "3c:fd:fe:aa:bb:cc"})
    pf = Device(PF, "8086", "1572", DeviceType.PF, "020000", 0, tags=pf_tags)
    vfs = [
        Device(address, "8086", "154c", DeviceType.VF, "020000", 0, PF, i, tags=tags)
        for i, address in enumerate(VFS)
    ]
    return [pf, *vfs]


@pytest.fixture
def services(engine: Engine, tmp_path: Path) -> Iterator[Services]:
    """Two hosts with one PF and two VFs on physnet1 each; a device-less flavor; network n."""
    built = build_services(Settings(tmp_path, str(engine.url)), engine=engine)
    cell = NumaCell(0, 0, frozenset(range(8)), 16384)
    for host in ("h1", "h2"):
        built.inventory.register_host(host)
        built.inventory.report(host, 0, InventoryReport(nic(), [cell]))
    built.flavors.create(LOCAL_ADMIN, parse_flavor("small", 1, 512, {}))
    built.networks.create_network(ALICE, "n", [VLAN])
    yield built


def boot(services: Services) -> InstanceRecord:
    vm = services.instances.boot(ALICE, "vm", "small")
    assert vm.host_id is not None
    return vm


def states(services: Services, host_id: str) -> dict[str, tuple[str, str | None]]:
    with services.sessions() as session:
        rows = session.execute(
            select(DeviceRow.address, DeviceRow.state, DeviceRow.instance_id).where(
                DeviceRow.host_id == host_id
            )
        )
        return {address: (state, owner) for address, state, owner in rows}


def generation(services: Services, host_id: str) -> int:
    with services.sessions() as session:
        return int(session.scalar(select(HostRow.generation).where(HostRow.id == host_id)) or 0)


def clean_audit(services: Services) -> None:
    report = audit_database(services.engine)
    assert report.clean, report.violations


def test_attach_claims_a_vf_on_the_instance_host_and_binds_the_port(services: Services) -> None:
    vm = boot(services)
    assert vm.host_id is not None
    port = services.networks.create_port(ALICE, "n", vnic_type="direct")
    before = generation(services, vm.host_id)
    result = services.ports_attach.attach(ALICE, vm.id, port_id=port.id)
    assert generation(services, vm.host_id) == before + 1
    request = result.instance.requests[-1]
    assert request.requester.kind is RequesterKind.PORT and request.requester.name == port.id
    (address,) = result.instance.devices[-1].devices
    assert address in VFS
    assert states(services, vm.host_id)[str(address)] == ("allocated", vm.id)
    assert states(services, vm.host_id)[str(PF)][0] == "unavailable"
    binding = result.port.binding
    assert result.port.instance_id == vm.id and binding is not None
    assert binding.host == vm.host and result.port.vif_type == "hw_veb"
    assert binding.vif_details["vlan"] == "1000"
    assert binding.profile["pci_slot"] == str(address)
    assert binding.profile["physical_network"] == "physnet1"
    assert binding.profile["vf_num"] == VFS.index(address)
    assert result.warnings == ()
    clean_audit(services)


def test_no_free_vf_on_the_instance_host_is_a_409_with_the_reason(services: Services) -> None:
    vm = boot(services)
    assert vm.host_id is not None
    with services.sessions() as session:
        other = session.scalars(select(HostRow.id).where(HostRow.id != vm.host_id)).one()
    for _ in VFS:
        services.ports_attach.attach(ALICE, vm.id, nic=Nic(net="n", vnic_type=VnicType.DIRECT))
    held = states(services, vm.host_id)
    port = services.networks.create_port(ALICE, "n", vnic_type="direct")
    with pytest.raises(NoDeviceOnHost) as caught:
        services.ports_attach.attach(ALICE, vm.id, port_id=port.id)
    assert caught.value.status == 409
    message = str(caught.value)
    assert f"no device for port {port.id} on host {vm.host}" in message
    assert "physnet1" in message
    # nothing changed: the instance's host kept its state, the other host's VFs stay free
    assert states(services, vm.host_id) == held
    assert {s for s, _ in states(services, other).values()} == {"available"}
    assert services.networks.get_port(ALICE, port.id).instance_id is None
    # a port created for the attach (nic net=) is deleted again when the attach fails
    ports_before = len(services.networks.list_ports(ALICE))
    with pytest.raises(NoDeviceOnHost):
        services.ports_attach.attach(ALICE, vm.id, nic=Nic(net="n", vnic_type=VnicType.DIRECT))
    assert len(services.networks.list_ports(ALICE)) == ports_before
    clean_audit(services)


def test_a_bound_port_cannot_be_attached_again(services: Services) -> None:
    vm = boot(services)
    port = services.networks.create_port(ALICE, "n", vnic_type="direct")
    services.ports_attach.attach(ALICE, vm.id, port_id=port.id)
    second = services.instances.boot(ALICE, "vm2", "small")
    for target in (vm.id, second.id):
        with pytest.raises(PortInUse) as caught:
            services.ports_attach.attach(ALICE, target, port_id=port.id)
        assert caught.value.status == 409


def test_detach_frees_the_vf_and_its_pf_and_unbinds(services: Services) -> None:
    vm = boot(services)
    assert vm.host_id is not None
    initial = states(services, vm.host_id)
    port = services.networks.create_port(ALICE, "n", vnic_type="direct")
    services.ports_attach.attach(ALICE, vm.id, port_id=port.id)
    result = services.ports_attach.detach(ALICE, vm.id, port.id)
    assert result.instance.requests == ()
    assert result.port.instance_id is None and result.port.binding is None
    assert result.port.vif_type == "unbound"
    assert states(services, vm.host_id) == initial  # the PF is available again
    with pytest.raises(NotFound):
        services.ports_attach.detach(ALICE, vm.id, port.id)
    services.networks.delete_port(ALICE, port.id)  # unbound: may go
    clean_audit(services)


def test_detach_keeps_the_other_attached_devices(services: Services) -> None:
    vm = boot(services)
    assert vm.host_id is not None
    first = services.ports_attach.attach(ALICE, vm.id, nic=Nic(net="n", vnic_type=VnicType.DIRECT))
    second = services.ports_attach.attach(ALICE, vm.id, nic=Nic(net="n", vnic_type=VnicType.DIRECT))
    kept = second.instance.devices[-1].devices[0]
    result = services.ports_attach.detach(ALICE, vm.id, first.port.id)
    assert [r.devices for r in result.instance.devices] == [(kept,)]
    after = states(services, vm.host_id)
    assert after[str(kept)] == ("allocated", vm.id)
    assert after[str(PF)][0] == "unavailable"
    assert {s for a, (s, _) in after.items() if a not in (str(kept), str(PF))} == {"available"}
    clean_audit(services)


def test_delete_frees_attached_devices_and_unbinds_their_ports(services: Services) -> None:
    vm = boot(services)
    assert vm.host_id is not None
    initial = states(services, vm.host_id)
    attached = services.ports_attach.attach(
        ALICE, vm.id, nic=Nic(net="n", vnic_type=VnicType.MACVTAP)
    )
    services.instances.delete(ALICE, vm.id)
    assert states(services, vm.host_id) == initial
    port = services.networks.get_port(ALICE, attached.port.id)
    assert port.instance_id is None and port.binding is None
    with pytest.raises(InstanceNotRunning):
        services.ports_attach.attach(ALICE, vm.id, port_id=port.id)
    clean_audit(services)


def test_a_normal_port_is_bound_without_a_device(services: Services) -> None:
    vm = boot(services)
    assert vm.host_id is not None
    initial = states(services, vm.host_id)
    result = services.ports_attach.attach(ALICE, vm.id, nic=Nic(net="n"))
    assert result.port.vif_type == "ovs" and result.instance.requests == ()
    assert states(services, vm.host_id) == initial
    detached = services.ports_attach.detach(ALICE, vm.id, result.port.id)
    assert detached.port.binding is None


def test_mixed_vnic_types_warn_or_deny(services: Services) -> None:
    vm = boot(services)
    services.ports_attach.attach(ALICE, vm.id, nic=Nic(net="n", vnic_type=VnicType.MACVTAP))
    result = services.ports_attach.attach(ALICE, vm.id, nic=Nic(net="n", vnic_type=VnicType.DIRECT))
    assert "live migration will unplug the direct ports" in result.warnings[0]
    services.ports_attach.detach(ALICE, vm.id, result.port.id)
    services.networks.options = NetworkOptions(mixed_vnic_policy=MixedVnicPolicy.DENY)
    with pytest.raises(MixedVnicTypes):
        services.ports_attach.attach(ALICE, vm.id, port_id=result.port.id)
    assert services.networks.get_port(ALICE, result.port.id).instance_id is None


def test_refusals_name_what_is_wrong(services: Services) -> None:
    vm = boot(services)
    with pytest.raises(NotFound):
        services.ports_attach.attach(BOB, vm.id, nic=Nic(net="n"))  # bob cannot see alice's vm
    with pytest.raises(InvalidInput) as caught:
        services.ports_attach.attach(ALICE, vm.id)
    assert caught.value.fields["rule"] == "port_or_net"
    port = services.networks.create_port(ALICE, "n", vnic_type="direct")
    with pytest.raises(NotFound) as missing:
        services.ports_attach.detach(ALICE, vm.id, port.id)
    assert "is not attached to instance" in str(missing.value)
