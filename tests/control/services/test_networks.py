"""Networks, ports and binding at boot, on SQLite and PostgreSQL (through the real container)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from pcifleet.control.container import Services, build_services
from pcifleet.control.scheduler.codec import InstanceState
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.networks import Nic, QosSpec
from pcifleet.control.services.principal import LOCAL_ADMIN, Principal, Role
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.errors import AlreadyExists, Forbidden, InvalidVfRate, NotFound
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import VnicType
from pcifleet.host.vf.model import LinkState
from pcifleet.network.errors import InvalidPort, NetworkExhausted, NetworkInUse, PortInUse
from pcifleet.network.segments import NetworkType, Segment, SegmentSpec

PF = PciAddress.parse("0000:3b:00.0")
PF_MAC = "3c:fd:fe:aa:bb:cc"
ALICE = Principal(Role.MEMBER, project="alice")
BOB = Principal(Role.MEMBER, project="bob")
VLAN = SegmentSpec(NetworkType.VLAN, "physnet1")
VXLAN = SegmentSpec(NetworkType.VXLAN)


def nic() -> list[Device]:
    tags = Tags({"physical_network": "physnet1", "trusted": "true"})
    pf = Device(
        PF,
        "8086",
        "1572",
        DeviceType.PF,
        "020000",
        0,
        tags=Tags({"physical_network": "physnet1", "mac_address": PF_MAC}),
    )
    vfs = [
        Device(PF.offset(16 + i), "8086", "154c", DeviceType.VF, "020000", 0, PF, i, tags=tags)
        for i in range(2)
    ]
    return [pf, *vfs]


@pytest.fixture
def services(engine: Engine, tmp_path: Path) -> Iterator[Services]:
    built = build_services(Settings(tmp_path, str(engine.url)), engine=engine)
    built.inventory.register_host("h1")
    cell = NumaCell(0, 0, frozenset(range(8)), 16384)
    built.inventory.report("h1", 0, InventoryReport(nic(), [cell]))
    built.flavors.create(LOCAL_ADMIN, parse_flavor("small", 1, 512, {}))
    yield built


def test_segments_are_allocated_and_never_shared(services: Services) -> None:
    nets = services.networks
    a = nets.create_network(ALICE, "a", [VXLAN, VLAN])
    b = nets.create_network(BOB, "b", [VLAN])
    assert a.segments == (
        Segment(NetworkType.VXLAN, None, 1),
        Segment(NetworkType.VLAN, "physnet1", 1000),
    )
    assert b.segments == (Segment(NetworkType.VLAN, "physnet1", 1001),)
    with pytest.raises(AlreadyExists):
        nets.create_network(BOB, "c", [SegmentSpec(NetworkType.VLAN, "physnet1", 1000)])
    with pytest.raises(AlreadyExists):
        nets.create_network(ALICE, "a", [VXLAN])
    with pytest.raises(NetworkExhausted):
        nets.create_network(ALICE, "z", [SegmentSpec(NetworkType.VLAN, "physnet9")])


def test_visibility_shared_and_owned(services: Services) -> None:
    nets = services.networks
    nets.create_network(ALICE, "private", [VXLAN])
    nets.create_network(LOCAL_ADMIN, "public", [VLAN], shared=True)
    with pytest.raises(Forbidden):
        nets.create_network(ALICE, "x", [VXLAN], shared=True)
    assert {n.name for n in nets.list_networks(BOB)} == {"public"}
    assert {n.name for n in nets.list_networks(ALICE)} == {"private", "public"}
    with pytest.raises(NotFound):
        nets.get_network(BOB, "private")
    port = nets.create_port(BOB, "public", vnic_type="direct")
    assert port.project == "bob"


def test_port_settings_map_to_vf_settings_with_qos_notes(services: Services) -> None:
    nets = services.networks
    nets.create_network(ALICE, "n", [VLAN])
    port = nets.create_port(
        ALICE,
        "n",
        vnic_type=VnicType.DIRECT,
        port_security=False,
        propagate_uplink_status=True,
        qos=QosSpec(max_kbps=1500, min_kbps=1000),
    )
    assert port.mac_address.startswith("fa:16:3e:")
    assert port.vf is not None
    assert (port.vf.spoofchk, port.vf.link_state) == (False, LinkState.AUTO)
    assert (port.vf.max_tx_rate_mbps, port.vf.min_tx_rate_mbps) == (2, 1)
    assert len(port.notes) == 1 and "1500 kbit/s is enforced as 2 Mbit/s" in port.notes[0]
    down = nets.create_port(
        ALICE, "n", vnic_type="macvtap", admin_state_up=False, propagate_uplink_status=True
    )
    assert down.vf is not None and down.vf.link_state is LinkState.DISABLE
    assert nets.create_port(ALICE, "n").vf is None  # normal port: no VF


@pytest.mark.parametrize(
    ("kwargs", "error", "rule"),
    [
        (
            {"vnic_type": "direct", "qos": QosSpec(max_kbps=1000, max_burst_kbps=100)},
            InvalidVfRate,
            "burst_unsupported",
        ),
        (
            {"vnic_type": "direct", "security_groups": ["default"]},
            InvalidPort,
            "security_groups_on_sriov_port",
        ),
        ({"vnic_type": "direct", "mac_address": "01:00:5e:00:00:01"}, InvalidPort, "unicast"),
    ],
)
def test_refused_port_settings_name_the_rule(
    services: Services, kwargs: dict[str, object], error: type[Exception], rule: str
) -> None:
    services.networks.create_network(ALICE, "n", [VLAN])
    with pytest.raises(error) as caught:
        services.networks.create_port(ALICE, "n", **kwargs)  # type: ignore[arg-type]
    assert caught.value.fields["rule"] == rule  # type: ignore[attr-defined]


def test_direct_port_on_vxlan_only_network_is_refused(services: Services) -> None:
    services.networks.create_network(ALICE, "overlay", [VXLAN])
    with pytest.raises(InvalidPort) as caught:
        services.networks.create_port(ALICE, "overlay", vnic_type="direct")
    assert caught.value.fields["rule"] == "sriov_needs_flat_or_vlan_segment"


def test_boot_binds_ports_and_delete_unbinds(services: Services) -> None:
    nets = services.networks
    nets.create_network(ALICE, "n", [VXLAN, VLAN])
    trusted = nets.create_port(ALICE, "n", vnic_type="direct", trusted=True)
    resolved = nets.resolve_nics(
        ALICE, [Nic(port=trusted.id), Nic(net="n", vnic_type=VnicType.NORMAL)]
    )
    assert resolved.warnings == () and len(resolved.created) == 1
    assert resolved.ports[0].physical_network == "physnet1"
    vm = services.instances.boot(ALICE, "vm", "small", ports=resolved.ports)
    assert vm.state is InstanceState.ACTIVE, vm.fault
    bound = nets.get_port(ALICE, trusted.id)
    assert bound.instance_id == vm.id and bound.binding is not None
    assert bound.binding.host == "h1" and bound.vif_type == "hw_veb"
    assert bound.binding.vif_details == {"port_filter": False, "connectivity": "l2", "vlan": "1000"}
    profile = dict(bound.binding.profile)
    assert profile["pci_slot"] in {str(PF.offset(16)), str(PF.offset(17))}
    assert profile["pci_vendor_info"] == "8086:154c"
    assert profile["physical_network"] == "physnet1"
    assert profile["pf_mac_address"] == PF_MAC and profile["trusted"] == "true"
    assert profile["vf_num"] in (0, 1)
    normal = nets.get_port(ALICE, resolved.created[0])
    assert normal.vif_type == "ovs" and normal.binding is not None
    with pytest.raises(PortInUse):
        nets.delete_port(ALICE, trusted.id)
    with pytest.raises(PortInUse):
        nets.resolve_nics(ALICE, [Nic(port=trusted.id)])
    services.instances.delete(ALICE, vm.id)
    after = nets.get_port(ALICE, trusted.id)
    assert after.instance_id is None and after.binding is None and after.vif_type == "unbound"
    with pytest.raises(NetworkInUse):
        nets.delete_network(ALICE, "n")
    nets.delete_ports(ALICE, [trusted.id, resolved.created[0]])
    nets.delete_network(ALICE, "n")
    assert nets.list_networks(ALICE) == []


def test_direct_physical_port_gets_the_pf_and_mixed_types_warn(services: Services) -> None:
    nets = services.networks
    nets.create_network(ALICE, "n", [VLAN])
    resolved = nets.resolve_nics(
        ALICE,
        [
            Nic(net="n", vnic_type=VnicType.DIRECT_PHYSICAL),
            Nic(net="n", vnic_type=VnicType.MACVTAP),
        ],
    )
    assert "live migration will unplug the direct ports" in resolved.warnings[0]
    vm = services.instances.boot(ALICE, "vm", "small", ports=resolved.ports[:1])
    assert vm.state is InstanceState.ACTIVE
    pf_port = nets.get_port(ALICE, resolved.created[0])
    assert pf_port.binding is not None and pf_port.vif_type == "hostdev_physical"
    assert pf_port.binding.profile["pci_slot"] == str(PF)
    assert pf_port.binding.profile["device_mac_address"] == PF_MAC
