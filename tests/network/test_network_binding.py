"""Binding results as Nova and Neutron exchange them."""

from __future__ import annotations

import pytest

from pcifleet.domain.device import DeviceType
from pcifleet.domain.vnic import VnicType
from pcifleet.network.binding import (
    BoundDevice,
    bind,
    port_physical_network,
    unbind_profile,
)
from pcifleet.network.errors import InvalidPort
from pcifleet.network.segments import NetworkType, Segment

VLAN = Segment(NetworkType.VLAN, "physnet2", 1000)
FLAT = Segment(NetworkType.FLAT, "physnet1")
VXLAN = Segment(NetworkType.VXLAN, None, 5001)
VF = BoundDevice("0000:82:10.2", "8086", "10ed", DeviceType.VF, "physnet2", 3, "3c:fd:fe:00:00:01")
PF = BoundDevice(
    "0000:82:00.0", "8086", "10fb", DeviceType.PF, "physnet2", None, "3c:fd:fe:00:00:01"
)


def test_direct_port_on_vlan_binds_hw_veb_with_the_vlan_as_string() -> None:
    binding = bind(VnicType.DIRECT, "compute-1", (VXLAN, VLAN), VF, {"trusted": "true"})
    assert binding.host == "compute-1"
    assert binding.vif_type == "hw_veb"
    assert binding.vif_details == {"port_filter": False, "connectivity": "l2", "vlan": "1000"}
    assert binding.profile == {
        "trusted": "true",
        "pci_vendor_info": "8086:10ed",
        "pci_slot": "0000:82:10.2",
        "physical_network": "physnet2",
        "vf_num": 3,
        "pf_mac_address": "3c:fd:fe:00:00:01",
    }


@pytest.mark.parametrize(
    ("vnic", "device", "vif_type", "segment", "vlan"),
    [
        (VnicType.MACVTAP, VF, "hw_veb", FLAT, "0"),
        (VnicType.DIRECT_PHYSICAL, PF, "hostdev_physical", VLAN, "1000"),
    ],
)
def test_vif_types_and_flat_vlan_zero(
    vnic: VnicType, device: BoundDevice, vif_type: str, segment: Segment, vlan: str
) -> None:
    binding = bind(vnic, "h", (segment,), device)
    assert binding.vif_type == vif_type
    assert binding.vif_details["vlan"] == vlan


def test_pf_profile_has_device_mac_and_no_vf_keys() -> None:
    profile = bind(VnicType.DIRECT_PHYSICAL, "h", (VLAN,), PF).profile
    assert profile["device_mac_address"] == "3c:fd:fe:00:00:01"
    assert "vf_num" not in profile and "pf_mac_address" not in profile


def test_normal_port_binds_without_device_and_with_port_filter() -> None:
    binding = bind(VnicType.NORMAL, "h", (VXLAN,), None)
    assert binding.vif_type == "ovs"
    assert binding.vif_details == {"port_filter": True, "connectivity": "l2"}
    assert binding.profile == {}


def test_device_port_without_device_is_refused() -> None:
    with pytest.raises(InvalidPort, match="without a device"):
        bind(VnicType.DIRECT, "h", (VLAN,), None)


def test_unbind_removes_novas_keys_only() -> None:
    profile = bind(VnicType.DIRECT, "h", (VLAN,), VF, {"trusted": "true"}).profile
    assert unbind_profile(profile) == {"trusted": "true"}


@pytest.mark.parametrize(
    ("vnic", "segments", "expected"),
    [
        (VnicType.DIRECT, (VXLAN, VLAN), "physnet2"),
        (VnicType.MACVTAP, (FLAT,), "physnet1"),
        (VnicType.VDPA, (VXLAN,), None),
        (VnicType.REMOTE_MANAGED, (VXLAN,), None),
    ],
)
def test_port_physical_network(
    vnic: VnicType, segments: tuple[Segment, ...], expected: str | None
) -> None:
    assert port_physical_network(vnic, segments) == expected


@pytest.mark.parametrize("vnic", [VnicType.DIRECT, VnicType.MACVTAP, VnicType.DIRECT_PHYSICAL])
def test_sriov_port_on_vxlan_only_network_names_the_rule(vnic: VnicType) -> None:
    with pytest.raises(InvalidPort) as caught:
        port_physical_network(vnic, (VXLAN,))
    assert caught.value.fields["rule"] == "sriov_needs_flat_or_vlan_segment"
