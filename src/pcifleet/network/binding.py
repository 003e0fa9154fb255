"""Port binding: what the controller writes on a port once its instance has a host and device.

The shapes are the ones Nova and Neutron exchange (Neutron's ``portbindings`` extension):

- ``binding:host_id``: the host;
- ``binding:vif_type``: from the vnic table (``hw_veb`` for ``direct``/``macvtap``,
  ``hostdev_physical`` for ``direct-physical``, ...); ``unbound`` before binding;
- ``binding:vif_details``: for SR-IOV ``{"port_filter": false, "connectivity": "l2",
  "vlan": "1000"}``, the VLAN as a string, ``"0"`` on a flat segment (``sriovnicswitch``);
- ``binding:profile``: what Nova fills from the claimed device: ``pci_slot``,
  ``pci_vendor_info`` (``vvvv:pppp``), ``physical_network``; for a VF also ``vf_num`` and
  ``pf_mac_address`` (when the PF's MAC is known); for a PF ``device_mac_address``; plus the
  user's ``trusted`` ("true"/"false"). Unbinding removes exactly Nova's keys
  (:data:`DEVICE_PROFILE_KEYS`) and keeps the rest.

Which ports need a flat/VLAN segment: those bound by the SR-IOV driver (vif types ``hw_veb`` and
``hostdev_physical``), because a VF leaves the host on a physical NIC; ``vdpa``,
``remote-managed`` and ``virtio-forwarder`` are bound by OVS/OVN and may sit on a tunneled
network (their device request then asks for ``physical_network`` None, as Nova's does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pcifleet.domain.device import DeviceType
from pcifleet.domain.vnic import VnicType, vnic_info
from pcifleet.network.errors import InvalidPort
from pcifleet.network.segments import Segment, device_segment

UNBOUND: Final = "unbound"
#: vif types bound by the SR-IOV mechanism driver: they need a flat or VLAN segment
SRIOV_VIF_TYPES: Final = frozenset({"hw_veb", "hostdev_physical"})
#: the profile keys Nova writes from a device and removes again on unbind
DEVICE_PROFILE_KEYS: Final = (
    "pci_vendor_info",
    "pci_slot",
    "allocation",
    "arq_uuid",
    "physical_network",
    "card_serial_number",
    "vf_num",
    "pf_mac_address",
    "device_mac_address",
)

ProfileValue = str | int | bool | None


def needs_physical_segment(vnic_type: VnicType) -> bool:
    """True for vnic types the SR-IOV driver binds (only flat/VLAN segments carry them)."""
    info = vnic_info(vnic_type)
    return info.needs_device and info.vif_type in SRIOV_VIF_TYPES


def port_physical_network(vnic_type: VnicType, segments: tuple[Segment, ...]) -> str | None:
    """The physical network a port's device request asks for, by Nova's rule.

    The first flat/VLAN segment's physical network; None on a tunneled-only network, which is
    refused for vnic types bound by the SR-IOV driver (they need a VLAN on a physical NIC).
    """
    segment = device_segment(segments)
    if segment is not None:
        return segment.physical_network
    if needs_physical_segment(vnic_type):
        raise InvalidPort(
            f"a {vnic_type} port needs a flat or vlan segment with a physical network; this "
            "network has only tunneled (vxlan) segments",
            field="network",
            rule="sriov_needs_flat_or_vlan_segment",
        )
    return None


@dataclass(frozen=True, slots=True)
class BoundDevice:
    """The facts of a claimed device that go into the binding profile."""

    address: str
    vendor_id: str
    product_id: str
    dev_type: DeviceType
    physical_network: str | None = None
    vf_index: int | None = None
    #: the parent PF's MAC (VF) or the device's own MAC (PF), when the inventory knows it
    mac_address: str | None = None

    @property
    def pci_vendor_info(self) -> str:
        return f"{self.vendor_id}:{self.product_id}"


def device_profile(device: BoundDevice) -> dict[str, ProfileValue]:
    """The profile keys Nova writes for a claimed device."""
    profile: dict[str, ProfileValue] = {
        "pci_vendor_info": device.pci_vendor_info,
        "pci_slot": device.address,
        "physical_network": device.physical_network,
    }
    if device.dev_type is DeviceType.PF:
        if device.mac_address:
            profile["device_mac_address"] = device.mac_address
        return profile
    if device.vf_index is not None:
        profile["vf_num"] = device.vf_index
    if device.mac_address:
        profile["pf_mac_address"] = device.mac_address
    return profile


def vif_details(vnic_type: VnicType, segment: Segment | None) -> dict[str, ProfileValue]:
    """``binding:vif_details``; SR-IOV ports carry the VLAN as a string ("0" when flat)."""
    info = vnic_info(vnic_type)
    details: dict[str, ProfileValue] = {
        "port_filter": info.host_firewall,
        "connectivity": "l2",
    }
    if segment is not None and segment.vlan is not None and info.needs_device:
        details["vlan"] = str(segment.vlan)
    return details


@dataclass(frozen=True, slots=True)
class Binding:
    host: str
    vif_type: str
    vif_details: Mapping[str, ProfileValue]
    profile: Mapping[str, ProfileValue]


def bind(
    vnic_type: VnicType,
    host: str,
    segments: tuple[Segment, ...],
    device: BoundDevice | None,
    user_profile: Mapping[str, ProfileValue] | None = None,
) -> Binding:
    """The binding of a port on ``host`` with its claimed ``device`` (None: no device)."""
    info = vnic_info(vnic_type)
    segment = device_segment(segments)
    if info.needs_device and device is None:
        raise InvalidPort(
            f"a {vnic_type} port cannot be bound without a device",
            field="binding",
            rule="device_required",
        )
    profile = dict(user_profile or {})
    if device is not None:
        profile.update(device_profile(device))
    return Binding(
        host=host,
        vif_type=info.vif_type or "other",
        vif_details=vif_details(vnic_type, segment),
        profile=profile,
    )


def unbind_profile(profile: Mapping[str, ProfileValue]) -> dict[str, ProfileValue]:
    """The profile after unbinding: Nova's device keys removed, the user's kept."""
    return {k: v for k, v in profile.items() if k not in DEVICE_PROFILE_KEYS}
