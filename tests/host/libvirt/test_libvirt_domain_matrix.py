"""A matrix of instances: every rendered domain passes ``virt-xml-validate`` and libvirt's own
parser (test driver), and the facts that matter come back from libvirt unchanged.

Each case lists, by hand, the facts libvirt must return for it (addresses, VLAN tags, NUMA
bindings, pinning, page sizes); on top of that every fact read from pcifleet's rendering must
equal the one read from libvirt's ``XMLDesc()``.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from libvirt_xml_facts import DefineReadback, ValidateXml, facts, without_generated

from pcifleet.domain.address import PciAddress
from pcifleet.domain.placement import CellPlacement, Placement
from pcifleet.domain.vnic import VnicType
from pcifleet.host.libvirt import (
    CpuMode,
    DomainSpec,
    GuestCell,
    GuestDevice,
    GuestDisk,
    GuestPort,
    VirtType,
    render_domain,
    to_string,
)

UUID_1 = UUID("6f1c7a52-3d1e-4c55-9a49-0d7a2b1e8c01")
OVS_PORT = UUID("0b8f1f0e-6a43-4f35-8d0f-3c1c2f3e4d5a")
GPU = PciAddress.parse("0000:3b:00.0")
QAT = PciAddress.parse("0000:af:00.1")
VF_A = PciAddress.parse("0000:81:10.2")
VF_B = PciAddress.parse("0000:81:10.4")
PF = PciAddress.parse("0000:82:00.0")
G2M, G1G = 2048, 1048576


def spec(name: str = "inst-1", vcpus: int = 2, memory_mib: int = 2048, **kw: Any) -> DomainSpec:
    return DomainSpec(name=name, uuid=UUID_1, vcpus=vcpus, memory_mib=memory_mib, **kw)


def two_cells(pinned: bool = False, page: int | None = None) -> tuple[GuestCell, ...]:
    return (
        GuestCell(0, 1, 2, 1024, frozenset({20, 21}) if pinned else frozenset(), page),
        GuestCell(1, 0, 2, 1024, frozenset({2, 3}) if pinned else frozenset(), page),
    )


def direct(address: PciAddress = VF_A, **kw: Any) -> GuestPort:
    return GuestPort(VnicType.DIRECT, mac="fa:16:3e:00:00:01", address=address, **kw)


ALL_PORTS = (
    direct(vlan=100, profile_id="fleet-prof-1"),
    GuestPort(VnicType.REMOTE_MANAGED, mac="fa:16:3e:00:00:02", address=VF_B),
    GuestPort(VnicType.MACVTAP, mac="fa:16:3e:00:00:03", vf_netdev="enp129s0f0v5", vlan=200),
    GuestPort(VnicType.VDPA, mac="fa:16:3e:00:00:04", vdpa_path="/dev/vhost-vdpa-3"),
    GuestPort(VnicType.NORMAL, mac="fa:16:3e:00:00:05", ovs_interface_id=OVS_PORT),
    GuestPort(VnicType.VIRTIO_FORWARDER, vhostuser_socket="/run/vrelay/vhu-1.sock"),
    GuestPort(VnicType.DIRECT_PHYSICAL, address=PF),
)

#: (case id, spec, facts libvirt must hand back)
CASES: list[tuple[str, DomainSpec, dict[str, Any]]] = [
    (
        "no-numa",
        spec(),
        {"vcpus": "2", "memory_kib": "2097152", "cells": (), "numatune_memory": None},
    ),
    ("no-numa-no-cpu-mode", spec(cpu_mode=None), {"cpu_mode": None, "vcpupins": ()}),
    (
        "qemu-host-passthrough",
        spec(virt_type=VirtType.QEMU, cpu_mode=CpuMode.HOST_PASSTHROUGH),
        {"virt_type": "qemu", "cpu_mode": "host-passthrough"},
    ),
    (
        "one-node-shared",
        spec(cells=(GuestCell(0, 1, 2, 2048),)),
        {
            "cells": (("0", "0-1", "2097152"),),
            "numatune_memory": ("strict", "1"),
            "memnodes": (("0", "strict", "1"),),
            "vcpupins": (),
        },
    ),
    (
        "two-nodes-shared",
        spec(vcpus=4, cells=two_cells()),
        {
            "cells": (("0", "0-1", "1048576"), ("1", "2-3", "1048576")),
            "numatune_memory": ("strict", "0-1"),
            "memnodes": (("0", "strict", "1"), ("1", "strict", "0")),
            "vcpupins": (),
        },
    ),
    (
        "one-node-dedicated",
        spec(cells=(GuestCell(0, 0, 2, 2048, frozenset({7, 5})),)),
        {"vcpupins": (("0", "5"), ("1", "7")), "emulatorpin": "5,7"},
    ),
    (
        "two-nodes-dedicated",
        spec(vcpus=4, cells=two_cells(pinned=True)),
        {
            "vcpupins": (("0", "20"), ("1", "21"), ("2", "2"), ("3", "3")),
            "emulatorpin": "2-3,20-21",
            "memnodes": (("0", "strict", "1"), ("1", "strict", "0")),
        },
    ),
    (
        "hugepages-2M-one-node",
        spec(cells=(GuestCell(0, 1, 2, 2048, hugepage_size_kib=G2M),)),
        {"pages": (("2048", "0"),)},
    ),
    (
        "hugepages-1G-two-nodes-dedicated",
        spec(vcpus=4, cells=two_cells(pinned=True, page=G1G)),
        {
            "pages": (("1048576", "0-1"),),
            "vcpupins": (("0", "20"), ("1", "21"), ("2", "2"), ("3", "3")),
        },
    ),
    (
        "hugepages-mixed-sizes",
        spec(
            vcpus=4,
            cells=(
                GuestCell(0, 0, 2, 1024, hugepage_size_kib=G2M),
                GuestCell(1, 1, 2, 1024, hugepage_size_kib=G1G),
            ),
        ),
        {"pages": (("2048", "0"), ("1048576", "1"))},
    ),
    ("hugepages-2M-no-numa", spec(hugepage_size_kib=G2M), {"pages": (("2048", None),)}),
    (
        "hostdev-managed",
        spec(devices=(GuestDevice(GPU),)),
        {"hostdevs": (("0000:3b:00.0", "yes"),), "interfaces": ()},
    ),
    (
        "hostdev-unmanaged-from-tag",
        spec(devices=(GuestDevice.from_tags(QAT, {"managed": "false"}),)),
        {"hostdevs": (("0000:af:00.1", "no"),)},
    ),
    ("direct-vf-vlan-profile", spec(ports=(ALL_PORTS[0],)), {}),
    ("direct-vf-no-vlan", spec(ports=(direct(),)), {}),
    ("remote-managed", spec(ports=(ALL_PORTS[1],)), {}),
    ("macvtap", spec(ports=(ALL_PORTS[2],)), {}),
    ("vdpa", spec(ports=(ALL_PORTS[3],)), {}),
    ("normal-ovs", spec(ports=(ALL_PORTS[4],)), {}),
    ("normal-linux-bridge", spec(ports=(GuestPort(VnicType.NORMAL, bridge="br0"),)), {}),
    ("virtio-forwarder", spec(ports=(ALL_PORTS[5],)), {"shared_memory": True}),
    (
        "direct-physical",
        spec(ports=(ALL_PORTS[6],)),
        {"hostdevs": (("0000:82:00.0", "yes"),), "interfaces": ()},
    ),
    (
        "everything-two-nodes-dedicated-1G-viommu",
        spec(
            vcpus=4,
            cells=two_cells(pinned=True, page=G1G),
            devices=(GuestDevice(GPU), GuestDevice(QAT, managed=False)),
            ports=ALL_PORTS,
            viommu=True,
            disk=GuestDisk("/var/lib/pcifleet/inst-1/disk.qcow2"),
        ),
        {
            "hostdevs": (
                ("0000:3b:00.0", "yes"),
                ("0000:af:00.1", "no"),
                ("0000:82:00.0", "yes"),
            ),
            "iommu": ("intel", "on", "on"),
            "ioapic": "qemu",
            "shared_memory": True,
            "disk": ("/var/lib/pcifleet/inst-1/disk.qcow2", "vda"),
        },
    ),
    (
        "viommu-with-hostdev",
        spec(devices=(GuestDevice(GPU),), viommu=True),
        {"iommu": ("intel", "on", "on"), "ioapic": "qemu"},
    ),
    ("no-viommu", spec(devices=(GuestDevice(GPU),)), {"iommu": None, "ioapic": None}),
    (
        "special-characters-escaped",
        spec(
            name='tenant\'s <vm> & "db" ünï',
            disk=GuestDisk("/srv/images/a&b <c>'d\".qcow2", target="vdb"),
        ),
        {
            "name": 'tenant\'s <vm> & "db" ünï',
            "disk": ("/srv/images/a&b <c>'d\".qcow2", "vdb"),
        },
    ),
    (
        "from-scheduler-placement",
        DomainSpec.from_placement(
            "placed",
            UUID_1,
            Placement(
                instance_id="i-1",
                cells=(
                    CellPlacement(0, 1, 2, 1024, frozenset({9, 8}), G2M, 512),
                    CellPlacement(1, 0, 2, 1024, frozenset({1, 0}), G2M, 512),
                ),
                devices=((GPU,),),
            ),
            devices=(GuestDevice(GPU),),
        ),
        {
            "vcpus": "4",
            "memory_kib": "2097152",
            "memnodes": (("0", "strict", "1"), ("1", "strict", "0")),
            "vcpupins": (("0", "8"), ("1", "9"), ("2", "0"), ("3", "1")),
            "pages": (("2048", "0-1"),),
        },
    ),
    (
        "from-floating-placement",
        DomainSpec.from_placement(
            "floating",
            UUID_1,
            Placement("i-2", (), (), floating_vcpus=3, floating_memory_mb=1536),
        ),
        {"vcpus": "3", "memory_kib": "1572864", "cells": ()},
    ),
]


MATRIX = pytest.mark.parametrize(
    ("domain_spec", "expected"), [(s, e) for _, s, e in CASES], ids=[c for c, _, _ in CASES]
)


@MATRIX
def test_rendered_domain_passes_virt_xml_validate(
    domain_spec: DomainSpec, expected: dict[str, Any], validate_xml: ValidateXml
) -> None:
    validate_xml(to_string(render_domain(domain_spec)))


@MATRIX
def test_libvirt_parses_rendered_domain_and_keeps_its_facts(
    domain_spec: DomainSpec, expected: dict[str, Any], define_readback: DefineReadback
) -> None:
    text = to_string(render_domain(domain_spec))
    rendered = facts(text)
    back = without_generated(facts(define_readback(text)), rendered)
    assert back == rendered
    for key, value in expected.items():
        assert getattr(back, key) == value, key
    assert back.name == domain_spec.name
    assert back.uuid == str(domain_spec.uuid)


def test_matrix_covers_every_pluggable_vnic_type() -> None:
    covered = {p.vnic_type for _, s, _ in CASES for p in s.ports}
    pluggable = {
        v for v in VnicType if v not in (VnicType.BAREMETAL,) and not v.startswith("accelerator")
    }
    assert covered == pluggable
