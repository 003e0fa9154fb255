"""``/v1/networks`` and ``/v1/ports`` over the in-process app, and boot with ``nics``."""

from __future__ import annotations

import httpx
import pytest
from api_kit import VFS, Fleet, Tokens, auth

from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.instances import NicIn
from pcifleet.control.api.schemas.networks import NetworkCreate, PortCreate, QosIn, SegmentIn
from pcifleet.domain.errors import Conflict, InvalidInput, NotFound
from pcifleet.domain.vnic import VnicType
from pcifleet.network.segments import NetworkType

VLAN = SegmentIn(network_type=NetworkType.VLAN, physical_network="physnet1")
VXLAN = SegmentIn(network_type=NetworkType.VXLAN)


def test_network_and_port_round_trip_with_qos_note(
    clients: dict[str, PcifleetClient], fleet: Fleet
) -> None:
    alice = clients["alice"]
    net = alice.create_network(NetworkCreate(name="n1", segments=[VXLAN, VLAN]))
    assert [(s.network_type, s.segmentation_id) for s in net.segments] == [
        ("vxlan", 1),
        ("vlan", 1000),
    ]
    assert [n.name for n in alice.list_networks()] == ["n1"]
    assert clients["bob"].list_networks() == []
    port = alice.create_port(
        PortCreate(
            network="n1", vnic_type=VnicType.DIRECT, qos=QosIn(max_kbps=2500), port_security=False
        )
    )
    assert port.vif_type == "unbound" and port.vf is not None
    assert (port.vf.max_tx_rate_mbps, port.vf.spoofchk, port.vf.link_state) == (3, False, "enable")
    assert "2500 kbit/s is enforced as 3 Mbit/s" in port.notes[0]
    assert alice.show_port(port.id).mac_address == port.mac_address
    with pytest.raises(NotFound):
        clients["bob"].show_port(port.id)
    with pytest.raises(Conflict):
        alice.delete_network("n1")
    alice.delete_port(port.id)
    alice.delete_network("n1")
    assert alice.list_networks() == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {
                "network": "n1",
                "vnic_type": "direct",
                "qos": {"max_kbps": 1000, "max_burst_kbps": 1},
            },
            "pcifleet.vf.invalid_rate",
        ),
        (
            {"network": "n1", "vnic_type": "macvtap", "security_groups": ["default"]},
            "pcifleet.port.invalid",
        ),
        ({"network": "overlay", "vnic_type": "direct"}, "pcifleet.port.invalid"),
    ],
)
def test_refused_ports_are_400_with_codes(
    http: httpx.Client,
    clients: dict[str, PcifleetClient],
    tokens: Tokens,
    fleet: Fleet,
    body: dict[str, object],
    code: str,
) -> None:
    clients["alice"].create_network(NetworkCreate(name="n1", segments=[VLAN]))
    clients["alice"].create_network(NetworkCreate(name="overlay", segments=[VXLAN]))
    response = http.post("/v1/ports", json=body, headers=auth(tokens.of("alice")))
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["code"] == code
    assert error["meta"]["rule"] in {
        "burst_unsupported",
        "security_groups_on_sriov_port",
        "sriov_needs_flat_or_vlan_segment",
    }


def test_boot_with_nics_binds_and_warns_and_delete_unbinds(
    clients: dict[str, PcifleetClient], fleet: Fleet
) -> None:
    alice = clients["alice"]
    alice.create_network(NetworkCreate(name="n1", segments=[VLAN]))
    nics = [
        NicIn(net="n1", vnic_type=VnicType.DIRECT),
        NicIn(net="n1", vnic_type=VnicType.MACVTAP),
    ]
    vm = alice.boot("vm1", "small", nics=nics)
    assert vm.state == "active"
    assert "live migration will unplug the direct ports" in vm.warnings[0]
    ports = alice.list_ports(instance=vm.id)
    assert sorted(p.vnic_type for p in ports) == ["direct", "macvtap"]
    for port in ports:
        assert port.binding is not None and port.binding.host == "h1"
        assert port.binding.vif_type == "hw_veb"
        assert port.binding.vif_details["vlan"] == "1000"
        assert port.binding.profile["pci_slot"] in VFS
        assert port.binding.profile["physical_network"] == "physnet1"
    alice.delete_instance(vm.id)
    assert alice.list_ports(instance=vm.id) == []
    assert all(p.binding is None for p in alice.list_ports(network="n1"))


def test_boot_that_cannot_be_placed_deletes_the_ports_it_created(
    clients: dict[str, PcifleetClient], fleet: Fleet
) -> None:
    alice = clients["alice"]
    alice.create_network(NetworkCreate(name="n1", segments=[VLAN]))
    nics = [NicIn(net="n1", vnic_type=VnicType.DIRECT) for _ in range(len(VFS) + 1)]
    vm = alice.boot("big", "small", nics=nics)
    assert vm.state == "error"
    assert alice.list_ports() == []
    with pytest.raises(InvalidInput):
        alice.boot("bad", "small", nics=[NicIn(net="n1", port="x")])
    assert alice.list_ports() == []
