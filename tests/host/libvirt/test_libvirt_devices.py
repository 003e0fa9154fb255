"""Device fragments (what hot plug attaches): one renderer per plug kind, exact XML per kind,
and every fragment accepted by ``virt-xml-validate`` and libvirt's parser.

libvirt's test driver has no ``attachDeviceFlags`` and there is no device schema for
``virt-xml-validate``, so each fragment is placed in a minimal domain built here; the fragment
itself is pcifleet's output, untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

import pytest
from libvirt_xml_facts import DefineReadback, ValidateXml, interface_facts, pci
from lxml import etree

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidGuestSpec
from pcifleet.domain.vnic import PlugKind, VnicType, vnic_info
from pcifleet.host.libvirt import (
    PORT_RENDERERS,
    GuestDevice,
    GuestPort,
    VhostUserMode,
    port_renderer,
    render_device,
    to_string,
)

VF = PciAddress.parse("0000:81:10.2")
PF = PciAddress.parse("0000:82:00.0")
MAC = "fa:16:3e:4f:00:01"

#: (id, device or port, its exact fragment)
FRAGMENTS: list[tuple[str, GuestDevice | GuestPort, str]] = [
    (
        "hostdev-managed",
        GuestDevice(PciAddress.parse("0000:3b:00.0")),
        """<hostdev mode="subsystem" type="pci" managed="yes">
  <source>
    <address domain="0x0000" bus="0x3b" slot="0x00" function="0x0"/>
  </source>
</hostdev>
""",
    ),
    (
        "hostdev-unmanaged-domain-1",
        GuestDevice(PciAddress.parse("0001:af:1f.7"), managed=False),
        """<hostdev mode="subsystem" type="pci" managed="no">
  <source>
    <address domain="0x0001" bus="0xaf" slot="0x1f" function="0x7"/>
  </source>
</hostdev>
""",
    ),
    (
        "direct-vf",
        GuestPort(VnicType.DIRECT, mac=MAC, address=VF, vlan=100, profile_id="gold"),
        """<interface type="hostdev" managed="yes">
  <mac address="fa:16:3e:4f:00:01"/>
  <source>
    <address type="pci" domain="0x0000" bus="0x81" slot="0x10" function="0x2"/>
  </source>
  <vlan>
    <tag id="100"/>
  </vlan>
  <virtualport type="802.1Qbh">
    <parameters profileid="gold"/>
  </virtualport>
</interface>
""",
    ),
    (
        "remote-managed-vf",
        GuestPort(VnicType.REMOTE_MANAGED, mac=MAC, address=VF),
        """<interface type="hostdev" managed="yes">
  <mac address="fa:16:3e:4f:00:01"/>
  <source>
    <address type="pci" domain="0x0000" bus="0x81" slot="0x10" function="0x2"/>
  </source>
</interface>
""",
    ),
    (
        "macvtap",
        GuestPort(VnicType.MACVTAP, mac=MAC, vf_netdev="enp129s0f0v2", vlan=0),
        """<interface type="direct">
  <mac address="fa:16:3e:4f:00:01"/>
  <source dev="enp129s0f0v2" mode="passthrough"/>
  <vlan>
    <tag id="0"/>
  </vlan>
  <model type="virtio"/>
  <driver name="vhost"/>
</interface>
""",
    ),
    (
        "vdpa",
        GuestPort(VnicType.VDPA, mac=MAC, vdpa_path="/dev/vhost-vdpa-12"),
        """<interface type="vdpa">
  <mac address="fa:16:3e:4f:00:01"/>
  <source dev="/dev/vhost-vdpa-12"/>
  <model type="virtio"/>
</interface>
""",
    ),
    (
        "normal-ovs",
        GuestPort(
            VnicType.NORMAL,
            mac=MAC,
            ovs_interface_id=UUID("0b8f1f0e-6a43-4f35-8d0f-3c1c2f3e4d5a"),
        ),
        """<interface type="bridge">
  <mac address="fa:16:3e:4f:00:01"/>
  <source bridge="br-int"/>
  <virtualport type="openvswitch">
    <parameters interfaceid="0b8f1f0e-6a43-4f35-8d0f-3c1c2f3e4d5a"/>
  </virtualport>
  <model type="virtio"/>
</interface>
""",
    ),
    (
        "virtio-forwarder-socket-escaped",
        GuestPort(
            VnicType.VIRTIO_FORWARDER,
            vhostuser_socket="/run/relay/a&b<c>'d\".sock",
            vhostuser_mode=VhostUserMode.CLIENT,
        ),
        """<interface type="vhostuser">
  <source type="unix" path="/run/relay/a&amp;b&lt;c&gt;'d&quot;.sock" mode="client"/>
  <model type="virtio"/>
</interface>
""",
    ),
    (
        "direct-physical",
        GuestPort(VnicType.DIRECT_PHYSICAL, mac=MAC, address=PF, managed=False),
        """<hostdev mode="subsystem" type="pci" managed="no">
  <source>
    <address domain="0x0000" bus="0x82" slot="0x00" function="0x0"/>
  </source>
</hostdev>
""",
    ),
]
IDS = [f[0] for f in FRAGMENTS]


@pytest.mark.parametrize(("item", "xml"), [(i, x) for _, i, x in FRAGMENTS], ids=IDS)
def test_each_kind_renders_its_exact_fragment(item: GuestDevice | GuestPort, xml: str) -> None:
    assert to_string(render_device(item)) == xml


def _minimal_domain(fragment: etree._Element) -> str:
    """A domain holding one fragment (the test driver has no hot plug to attach it with)."""
    domain = etree.Element("domain", type="kvm")
    etree.SubElement(domain, "name").text = "hotplug-target"
    etree.SubElement(domain, "memory", unit="KiB").text = "1048576"
    etree.SubElement(domain, "vcpu").text = "1"
    os = etree.SubElement(domain, "os")
    etree.SubElement(os, "type", arch="x86_64", machine="q35").text = "hvm"
    etree.SubElement(domain, "devices").append(fragment)
    return etree.tostring(domain, encoding="unicode")


@pytest.mark.parametrize("item", [i for _, i, _ in FRAGMENTS], ids=IDS)
def test_fragment_passes_virt_xml_validate(
    item: GuestDevice | GuestPort, validate_xml: ValidateXml
) -> None:
    validate_xml(_minimal_domain(render_device(item)))


@pytest.mark.parametrize("item", [i for _, i, _ in FRAGMENTS], ids=IDS)
def test_libvirt_parses_fragment(
    item: GuestDevice | GuestPort, define_readback: DefineReadback
) -> None:
    fragment = render_device(item)
    text = _minimal_domain(fragment)
    back = etree.fromstring(define_readback(text).encode())
    found = back.find(f"devices/{fragment.tag}")
    assert found is not None
    if fragment.tag == "interface":
        mine, theirs = interface_facts(fragment), interface_facts(found)
        if mine.mac is None:
            assert theirs.mac is not None  # libvirt generated one
            theirs = dataclasses.replace(theirs, mac=None)
        assert theirs == mine
    else:
        assert found.attrib == fragment.attrib
        assert pci(found.find("source/address")) == str(item.address)


def test_factory_has_a_renderer_for_every_plug_kind_but_none() -> None:
    assert set(PORT_RENDERERS) == set(PlugKind) - {PlugKind.NONE}
    with pytest.raises(InvalidGuestSpec) as caught:
        port_renderer(PlugKind.NONE)
    assert caught.value.fields["rule"] == "plug-kind"


#: the root element and ``type`` each plug kind produces
SHAPES: dict[PlugKind, tuple[str, str]] = {
    PlugKind.HOSTDEV_INTERFACE: ("interface", "hostdev"),
    PlugKind.HOSTDEV: ("hostdev", "pci"),
    PlugKind.MACVTAP: ("interface", "direct"),
    PlugKind.VDPA: ("interface", "vdpa"),
    PlugKind.VHOSTUSER: ("interface", "vhostuser"),
    PlugKind.VIRTIO: ("interface", "bridge"),
}

_FULL_PORT: dict[str, Any] = {
    "address": VF,
    "vf_netdev": "eth7",
    "vdpa_path": "/dev/vhost-vdpa-0",
    "vhostuser_socket": "/run/s.sock",
}


@pytest.mark.parametrize(
    "vnic_type", [v for v in VnicType if vnic_info(v).plug is not PlugKind.NONE]
)
def test_vnic_table_picks_the_renderer(vnic_type: VnicType) -> None:
    port = GuestPort(vnic_type, **_FULL_PORT)
    element = render_device(port)
    assert (element.tag, element.get("type")) == SHAPES[vnic_info(vnic_type).plug]


@pytest.mark.parametrize("vnic_type", [v for v in VnicType if vnic_info(v).plug is PlugKind.NONE])
def test_ports_without_libvirt_device_are_refused(vnic_type: VnicType) -> None:
    with pytest.raises(InvalidGuestSpec) as caught:
        GuestPort(vnic_type, **_FULL_PORT)
    assert caught.value.fields == {
        "detail": caught.value.fields["detail"],
        "field": "vnic_type",
        "rule": "plug-kind",
    }
