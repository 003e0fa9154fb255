"""One small renderer per device kind, chosen by the vnic table's plug kind.

Every element is built with lxml, so names and values are escaped by the serializer, never by
hand. The shapes are the ones Nova writes (nova-pci reference §8):

- whole function (flavor device, ``direct-physical`` port): ``<hostdev mode='subsystem'
  type='pci' managed='yes|no'>`` with the host address;
- direct VF (``direct``, ``remote-managed``): ``<interface type='hostdev' managed='yes'>`` with
  MAC, ``<vlan><tag/></vlan>`` and an optional 802.1Qbh ``virtualport``; libvirt programs the
  VF's admin MAC and VLAN through the PF before handing the VF to the guest;
- macvtap: ``<interface type='direct'>`` on the VF's netdev in ``passthrough`` mode, virtio
  model, vhost driver;
- vDPA: ``<interface type='vdpa'>`` on ``/dev/vhost-vdpa-N``;
- virtio-forwarder: ``<interface type='vhostuser'>`` on the relay's socket;
- ``normal``: a virtio NIC on a bridge (``<virtualport type='openvswitch'>`` when the port has
  an OVS interface id).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Final, TypeVar

from lxml import etree

from pcifleet.domain.address import PciAddress
from pcifleet.domain.vnic import PlugKind
from pcifleet.host.libvirt.model import GuestDevice, GuestPort, invalid

Element = etree._Element
PortRenderer = Callable[[GuestPort], Element]
_T = TypeVar("_T")


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _sub(parent: Element, tag: str, **attrs: str) -> Element:
    return etree.SubElement(parent, tag, attrs)


def _address(parent: Element, address: PciAddress, *, typed: bool) -> Element:
    """``<address domain='0x0000' bus='0x81' slot='0x10' function='0x2'/>`` (libvirt's form)."""
    attrs = {"type": "pci"} if typed else {}
    attrs |= {
        "domain": f"0x{address.domain:04x}",
        "bus": f"0x{address.bus:02x}",
        "slot": f"0x{address.slot:02x}",
        "function": f"0x{address.function:x}",
    }
    return etree.SubElement(parent, "address", attrs)


def _pci_hostdev(address: PciAddress, managed: bool) -> Element:
    element = etree.Element("hostdev", mode="subsystem", type="pci", managed=_yes_no(managed))
    _address(_sub(element, "source"), address, typed=False)
    return element


def render_hostdev(device: GuestDevice) -> Element:
    """A whole PCI function (flavor device)."""
    return _pci_hostdev(device.address, device.managed)


def _require(value: _T | None, name: str) -> _T:
    # GuestPort checks its required fields when built; this narrows the type for mypy
    if value is None:
        raise invalid(name, "required", f"the port has no {name}")
    return value


def _mac(parent: Element, port: GuestPort) -> None:
    if port.mac is not None:
        _sub(parent, "mac", address=port.mac)


def _vlan_and_profile(parent: Element, port: GuestPort) -> None:
    if port.vlan is not None:
        _sub(_sub(parent, "vlan"), "tag", id=str(port.vlan))
    if port.profile_id is not None:
        virtualport = _sub(parent, "virtualport", type="802.1Qbh")
        _sub(virtualport, "parameters", profileid=port.profile_id)


def _virtio(parent: Element) -> None:
    _sub(parent, "model", type="virtio")


def render_hostdev_interface(port: GuestPort) -> Element:
    """A direct VF: libvirt sets its MAC/VLAN through the PF, then assigns it with VFIO."""
    element = etree.Element("interface", type="hostdev", managed=_yes_no(port.managed))
    _mac(element, port)
    _address(_sub(element, "source"), _require(port.address, "address"), typed=True)
    _vlan_and_profile(element, port)
    return element


def render_physical(port: GuestPort) -> Element:
    """A whole PF for a ``direct-physical`` port: a plain hostdev, no MAC or VLAN."""
    return _pci_hostdev(_require(port.address, "address"), port.managed)


def render_macvtap(port: GuestPort) -> Element:
    """macvtap in passthrough mode on the VF netdev; the guest sees a virtio NIC."""
    element = etree.Element("interface", type="direct")
    _mac(element, port)
    _sub(element, "source", dev=_require(port.vf_netdev, "vf_netdev"), mode="passthrough")
    _vlan_and_profile(element, port)
    _virtio(element)
    _sub(element, "driver", name="vhost")
    return element


def render_vdpa(port: GuestPort) -> Element:
    element = etree.Element("interface", type="vdpa")
    _mac(element, port)
    _sub(element, "source", dev=_require(port.vdpa_path, "vdpa_path"))
    _virtio(element)
    return element


def render_vhostuser(port: GuestPort) -> Element:
    element = etree.Element("interface", type="vhostuser")
    _mac(element, port)
    socket = _require(port.vhostuser_socket, "vhostuser_socket")
    _sub(element, "source", type="unix", path=socket, mode=port.vhostuser_mode.value)
    _virtio(element)
    return element


def render_virtio(port: GuestPort) -> Element:
    """A ``normal`` port: virtio on a bridge, an OVS port when it has an interface id."""
    element = etree.Element("interface", type="bridge")
    _mac(element, port)
    _sub(element, "source", bridge=port.bridge)
    if port.ovs_interface_id is not None:
        virtualport = _sub(element, "virtualport", type="openvswitch")
        _sub(virtualport, "parameters", interfaceid=str(port.ovs_interface_id))
    _virtio(element)
    return element


#: the renderer of each plug kind (the vnic table says which kind a port is)
PORT_RENDERERS: Final = MappingProxyType(
    {
        PlugKind.HOSTDEV_INTERFACE: render_hostdev_interface,
        PlugKind.HOSTDEV: render_physical,
        PlugKind.MACVTAP: render_macvtap,
        PlugKind.VDPA: render_vdpa,
        PlugKind.VHOSTUSER: render_vhostuser,
        PlugKind.VIRTIO: render_virtio,
    }
)


def port_renderer(plug: PlugKind) -> PortRenderer:
    """The renderer for a plug kind; ``none`` (bare metal, accelerators) has no XML."""
    renderer = PORT_RENDERERS.get(plug)
    if renderer is None:
        raise invalid("vnic_type", "plug-kind", f"plug kind {plug} has no libvirt device")
    return renderer


def render_device(item: GuestDevice | GuestPort) -> Element:
    """The XML fragment of one device or port (what hot plug attaches)."""
    if isinstance(item, GuestDevice):
        return render_hostdev(item)
    return port_renderer(item.plug)(item)
