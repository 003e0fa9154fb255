"""The renderer's inputs refuse what libvirt would refuse, naming the field and the rule; and
for the rules copied from libvirt, libvirt's parser really does refuse the XML."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from libvirt_xml_facts import DefineReadback
from lxml import etree

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidGuestSpec
from pcifleet.domain.vnic import VnicType
from pcifleet.host.libvirt import (
    DomainSpec,
    GuestCell,
    GuestDevice,
    GuestDisk,
    GuestPort,
    render_domain,
    to_string,
)

UUID_1 = UUID("6f1c7a52-3d1e-4c55-9a49-0d7a2b1e8c01")
VF = PciAddress.parse("0000:81:10.2")
GPU = PciAddress.parse("0000:3b:00.0")


def spec(**kw: Any) -> DomainSpec:
    base: dict[str, Any] = {"name": "vm", "uuid": UUID_1, "vcpus": 2, "memory_mib": 2048}
    return DomainSpec(**(base | kw))


def port(vnic: VnicType = VnicType.DIRECT, **kw: Any) -> GuestPort:
    base: dict[str, Any] = {"address": VF}
    return GuestPort(vnic, **(base | kw))


def cells(*specs: tuple[int, int, int, int]) -> tuple[GuestCell, ...]:
    return tuple(GuestCell(*s) for s in specs)


#: (id, construction, field, rule)
REFUSED: list[tuple[str, Callable[[], object], str, str]] = [
    ("mac-format", lambda: port(mac="fa:16:3e:0:0:1"), "mac", "format"),
    ("mac-multicast", lambda: port(mac="01:00:5e:00:00:01"), "mac", "unicast"),
    ("vlan-range", lambda: port(vlan=4096), "vlan", "range"),
    ("vlan-negative", lambda: port(vlan=-1), "vlan", "range"),
    (
        "vlan-on-vdpa",
        lambda: port(VnicType.VDPA, vdpa_path="/dev/vhost-vdpa-0", vlan=5),
        "vlan",
        "plug-kind",
    ),
    ("vlan-on-pf", lambda: port(VnicType.DIRECT_PHYSICAL, vlan=5), "vlan", "plug-kind"),
    ("profile-on-normal", lambda: port(VnicType.NORMAL, profile_id="p"), "profile_id", "plug-kind"),
    ("profile-too-long", lambda: port(profile_id="p" * 40), "profile_id", "length"),
    ("profile-xml-special", lambda: port(profile_id="a&b"), "profile_id", "xml-special"),
    ("profile-control-char", lambda: port(profile_id="a\nb"), "profile_id", "text"),
    ("direct-needs-address", lambda: GuestPort(VnicType.DIRECT), "address", "required"),
    ("pf-needs-address", lambda: GuestPort(VnicType.DIRECT_PHYSICAL), "address", "required"),
    ("macvtap-needs-netdev", lambda: GuestPort(VnicType.MACVTAP), "vf_netdev", "required"),
    ("vdpa-needs-path", lambda: GuestPort(VnicType.VDPA), "vdpa_path", "required"),
    (
        "forwarder-needs-socket",
        lambda: GuestPort(VnicType.VIRTIO_FORWARDER),
        "vhostuser_socket",
        "required",
    ),
    ("netdev-space", lambda: GuestPort(VnicType.MACVTAP, vf_netdev="eth 0"), "vf_netdev", "ifname"),
    (
        "netdev-too-long",
        lambda: GuestPort(VnicType.MACVTAP, vf_netdev="e" * 16),
        "vf_netdev",
        "ifname",
    ),
    ("bridge-slash", lambda: GuestPort(VnicType.NORMAL, bridge="br/0"), "bridge", "ifname"),
    (
        "vdpa-path",
        lambda: GuestPort(VnicType.VDPA, vdpa_path="/dev/vhost-net"),
        "vdpa_path",
        "format",
    ),
    (
        "socket-relative",
        lambda: GuestPort(VnicType.VIRTIO_FORWARDER, vhostuser_socket="s.sock"),
        "vhostuser_socket",
        "absolute",
    ),
    ("baremetal", lambda: GuestPort(VnicType.BAREMETAL), "vnic_type", "plug-kind"),
    ("name-empty", lambda: spec(name=""), "name", "text"),
    ("name-slash", lambda: spec(name="a/b"), "name", "no-slash"),
    ("name-control", lambda: spec(name="a\x07"), "name", "text"),
    ("no-vcpus", lambda: spec(vcpus=0), "vcpus", "positive"),
    ("cell-no-memory", lambda: GuestCell(0, 0, 1, 0), "cells", "positive"),
    ("cell-negative-host", lambda: GuestCell(0, -1, 1, 1), "cells", "non-negative"),
    ("cells-not-contiguous", lambda: spec(cells=cells((1, 0, 2, 2048))), "cells", "contiguous"),
    ("cells-vcpu-sum", lambda: spec(vcpus=3, cells=cells((0, 0, 2, 2048))), "vcpus", "cells-sum"),
    ("cells-memory-sum", lambda: spec(cells=cells((0, 0, 2, 1024))), "memory_mib", "cells-sum"),
    (
        "pinned-count",
        lambda: GuestCell(0, 0, 2, 1024, frozenset({1})),
        "pinned_cpus",
        "one-per-vcpu",
    ),
    (
        "pinned-negative",
        lambda: GuestCell(0, 0, 1, 1024, frozenset({-1})),
        "pinned_cpus",
        "non-negative",
    ),
    (
        "pinned-all-or-none",
        lambda: spec(
            vcpus=4, cells=(GuestCell(0, 0, 2, 1024, frozenset({1, 2})), GuestCell(1, 1, 2, 1024))
        ),
        "pinned_cpus",
        "all-or-none",
    ),
    (
        "pinned-twice",
        lambda: spec(
            vcpus=4,
            cells=(
                GuestCell(0, 0, 2, 1024, frozenset({1, 2})),
                GuestCell(1, 1, 2, 1024, frozenset({2, 3})),
            ),
        ),
        "pinned_cpus",
        "distinct",
    ),
    (
        "page-not-power-of-two",
        lambda: spec(hugepage_size_kib=3000),
        "hugepage_size_kib",
        "power-of-two",
    ),
    (
        "page-multiple",
        lambda: spec(memory_mib=1536, hugepage_size_kib=1048576),
        "memory_mib",
        "hugepage-multiple",
    ),
    (
        "page-multiple-cell",
        lambda: GuestCell(0, 0, 1, 1536, hugepage_size_kib=1048576),
        "memory_mib",
        "hugepage-multiple",
    ),
    (
        "page-size-per-cell",
        lambda: spec(cells=cells((0, 0, 2, 2048)), hugepage_size_kib=2048),
        "hugepage_size_kib",
        "per-cell",
    ),
    (
        "device-twice",
        lambda: spec(devices=(GuestDevice(VF),), ports=(port(),)),
        "devices",
        "distinct",
    ),
    ("viommu-needs-q35", lambda: spec(viommu=True, machine="pc-i440fx-7.2"), "viommu", "q35"),
    ("disk-relative", lambda: GuestDisk("disk.qcow2"), "disk.path", "absolute"),
    ("disk-target", lambda: GuestDisk("/d.qcow2", target="xvda"), "disk.target", "format"),
]


@pytest.mark.parametrize(
    ("build", "field", "rule"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_refused_with_field_and_rule(build: Callable[[], object], field: str, rule: str) -> None:
    with pytest.raises(InvalidGuestSpec) as caught:
        build()
    assert (caught.value.fields["field"], caught.value.fields["rule"]) == (field, rule)
    assert str(caught.value).startswith(f"guest {field}: ")
    assert caught.value.status == 400


def test_mac_is_normalized_to_lower_case() -> None:
    assert port(mac=" FA:16:3E:AA:BB:0C").mac == "fa:16:3e:aa:bb:0c"


@pytest.mark.parametrize(
    ("tags", "managed"),
    [
        ({}, True),
        ({"managed": "true"}, True),
        ({"managed": "True"}, True),
        ({"managed": "false"}, False),
    ],
)
def test_managed_comes_from_the_device_tag(tags: dict[str, str], managed: bool) -> None:
    assert GuestDevice.from_tags(GPU, tags).managed is managed


def test_cells_take_consecutive_vcpus_in_node_order() -> None:
    domain = spec(vcpus=5, memory_mib=3072, cells=cells((0, 1, 3, 1024), (1, 0, 2, 2048)))
    assert [list(domain.vcpu_ids(c)) for c in domain.cells] == [[0, 1, 2], [3, 4]]
    assert not domain.dedicated


def test_dedicated_only_when_every_cell_is_pinned() -> None:
    pinned = GuestCell(0, 0, 2, 2048, frozenset({4, 6}))
    assert spec(cells=(pinned,)).dedicated
    assert not spec().dedicated


def _rendered(domain: DomainSpec) -> etree._Element:
    return etree.fromstring(to_string(render_domain(domain)).encode())


def _set(path: str, attr: str, value: str) -> Callable[[etree._Element], None]:
    def mutate(root: etree._Element) -> None:
        found = root.find(path)
        assert found is not None
        if attr:
            found.set(attr, value)
        else:
            found.text = value

    return mutate


def _duplicate_hostdev(root: etree._Element) -> None:
    devices = root.find("devices")
    assert devices is not None
    devices.append(etree.fromstring(etree.tostring(devices.find("hostdev"))))


VALID = spec(
    cells=cells((0, 0, 2, 2048)),
    devices=(GuestDevice(GPU),),
    ports=(port(mac="fa:16:3e:00:00:01", vlan=10),),
)

#: (id, how the valid XML is broken, text of libvirt's refusal, the REFUSED case preventing it)
LIBVIRT_REFUSES: list[tuple[str, Callable[[etree._Element], None], str, str]] = [
    ("vlan-4096", _set("devices/interface/vlan/tag", "id", "4096"), "too large", "vlan-range"),
    (
        "multicast-mac",
        _set("devices/interface/mac", "address", "01:00:5e:00:00:01"),
        "unicast",
        "mac-multicast",
    ),
    ("slash-in-name", _set("name", "", "a/b"), "cannot contain '/'", "name-slash"),
    ("hostdev-twice", _duplicate_hostdev, "already exists", "device-twice"),
    ("cells-exceed-vcpus", _set("vcpu", "", "1"), "exceeds the <vcpu> count", "cells-vcpu-sum"),
]
_BUILDERS = {r[0]: r[1] for r in REFUSED}


@pytest.mark.parametrize(
    ("mutate", "message", "refused_case"),
    [r[1:] for r in LIBVIRT_REFUSES],
    ids=[r[0] for r in LIBVIRT_REFUSES],
)
def test_libvirt_refuses_what_the_model_refuses(
    mutate: Callable[[etree._Element], None],
    message: str,
    refused_case: str,
    define_readback: DefineReadback,
    libvirt_error: type[Exception],
) -> None:
    root = _rendered(VALID)
    define_readback(etree.tostring(root, encoding="unicode"))  # the unbroken one is fine
    mutate(root)
    with pytest.raises(libvirt_error, match=message):
        define_readback(etree.tostring(root, encoding="unicode"))
    with pytest.raises(InvalidGuestSpec):
        _BUILDERS[refused_case]()


def test_libvirt_prints_profileid_unescaped(define_readback: DefineReadback) -> None:
    """Why ``< > & ' "`` are refused in profile ids: libvirt's own XML would be ill-formed."""
    root = _rendered(spec(ports=(port(profile_id="ok"),)))
    parameters = root.find("devices/interface/virtualport/parameters")
    assert parameters is not None
    parameters.set("profileid", "p&<1>")
    back = define_readback(etree.tostring(root, encoding="unicode"))
    assert "profileid='p&<1>'" in back
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(back.encode())
