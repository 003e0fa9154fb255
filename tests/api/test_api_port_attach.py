"""``POST /v1/instances/{id}/ports`` and ``DELETE /v1/instances/{id}/ports/{port_id}`` over
the in-process app (the typed client and raw HTTP for the error documents)."""

from __future__ import annotations

import httpx
import pytest
from api_kit import PF, VFS, Fleet, Tokens, auth

from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.instances import NicIn
from pcifleet.control.api.schemas.networks import NetworkCreate, PortCreate, SegmentIn
from pcifleet.domain.errors import InvalidInput, NotFound
from pcifleet.domain.vnic import VnicType
from pcifleet.network.errors import NoDeviceOnHost, PortInUse
from pcifleet.network.segments import NetworkType

VLAN = SegmentIn(network_type=NetworkType.VLAN, physical_network="physnet1")


def device_states(admin: PcifleetClient) -> dict[str, str]:
    return {d.address: d.state for d in admin.list_devices(host="h1")}


def test_attach_and_detach_round_trip(clients: dict[str, PcifleetClient], fleet: Fleet) -> None:
    alice, admin = clients["alice"], clients["admin"]
    alice.create_network(NetworkCreate(name="n1", segments=[VLAN]))
    vm = alice.boot("vm1", "small")
    before = device_states(admin)
    port = alice.create_port(PortCreate(network="n1", vnic_type=VnicType.DIRECT))
    attached = alice.attach_port(vm.id, port=port.id)
    assert attached.port.instance_id == vm.id and attached.port.binding is not None
    slot = attached.port.binding.profile["pci_slot"]
    assert slot in VFS and attached.port.binding.vif_type == "hw_veb"
    assert attached.instance.requests[-1].requester == port.id
    assert attached.instance.requests[-1].devices == [slot]
    assert device_states(admin)[str(slot)] == "allocated"
    assert device_states(admin)[PF] == "unavailable"
    assert alice.show_instance(vm.id).requests[-1].devices == [slot]
    detached = alice.detach_port(vm.id, port.id)
    assert detached.port.binding is None and detached.instance.requests == []
    assert device_states(admin) == before


def test_attach_a_new_port_on_a_network_warns_on_mixed_types(
    clients: dict[str, PcifleetClient], fleet: Fleet
) -> None:
    alice = clients["alice"]
    alice.create_network(NetworkCreate(name="n1", segments=[VLAN]))
    vm = alice.boot("vm1", "small", nics=[NicIn(net="n1", vnic_type=VnicType.MACVTAP)])
    result = alice.attach_port(vm.id, nic=NicIn(net="n1", vnic_type=VnicType.DIRECT))
    assert "live migration will unplug the direct ports" in result.warnings[0]
    assert sorted(p.vnic_type for p in alice.list_ports(instance=vm.id)) == ["direct", "macvtap"]


def test_no_free_vf_is_409_and_a_bound_port_is_409(
    http: httpx.Client, clients: dict[str, PcifleetClient], tokens: Tokens, fleet: Fleet
) -> None:
    alice = clients["alice"]
    alice.create_network(NetworkCreate(name="n1", segments=[VLAN]))
    vm = alice.boot("vm1", "small")
    first = alice.attach_port(vm.id, nic=NicIn(net="n1", vnic_type=VnicType.DIRECT))
    alice.attach_port(vm.id, nic=NicIn(net="n1", vnic_type=VnicType.DIRECT))
    spare = alice.create_port(PortCreate(network="n1", vnic_type=VnicType.DIRECT))
    response = http.post(
        f"/v1/instances/{vm.id}/ports", json={"port": spare.id}, headers=auth(tokens.of("alice"))
    )
    assert response.status_code == 409
    error = response.json()["errors"][0]
    assert error["code"] == "pcifleet.port.no_device_on_host"
    assert "physnet1" in error["detail"] and "h1" in error["detail"]
    with pytest.raises(NoDeviceOnHost):
        alice.attach_port(vm.id, port=spare.id)
    with pytest.raises(PortInUse):
        alice.attach_port(vm.id, port=first.port.id)


def test_bad_requests_and_visibility(
    http: httpx.Client, clients: dict[str, PcifleetClient], tokens: Tokens, fleet: Fleet
) -> None:
    alice = clients["alice"]
    alice.create_network(NetworkCreate(name="n1", segments=[VLAN]))
    vm = alice.boot("vm1", "small")
    with pytest.raises(InvalidInput):
        alice.attach_port(vm.id)
    response = http.post(
        f"/v1/instances/{vm.id}/ports", json={"bogus": 1}, headers=auth(tokens.of("alice"))
    )
    assert response.status_code == 400
    with pytest.raises(NotFound):
        clients["bob"].attach_port(vm.id, nic=NicIn(net="n1"))
    port = alice.create_port(PortCreate(network="n1", vnic_type=VnicType.DIRECT))
    with pytest.raises(NotFound):
        alice.detach_port(vm.id, port.id)
