"""Fake trees built from profiles are laid out exactly like the kernel's sysfs.

The q35 profile mimics the real-kernel capture, so the two trees are compared fact by fact:
the same functions, ids, drivers, NUMA nodes, relative link targets and netdev placement.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidProfile
from pcifleet.sim.profile import load_shipped, loads_profile
from pcifleet.sim.sysfs_builder import BuiltHost, build_tree, plan_functions

ATTRIBUTES = (
    "vendor",
    "device",
    "subsystem_vendor",
    "subsystem_device",
    "revision",
    "class",
    "numa_node",
    "local_cpulist",
    "driver_override",
    "current_link_speed",
    "current_link_width",
    "sriov_totalvfs",
    "sriov_numvfs",
    "sriov_offset",
    "sriov_stride",
    "sriov_vf_device",
    "sriov_drivers_autoprobe",
)
LINKS = ("driver", "physfn", "subsystem", *(f"virtfn{i}" for i in range(8)))
FORMATS = {
    "vendor": r"0x[0-9a-f]{4}\n",
    "device": r"0x[0-9a-f]{4}\n",
    "subsystem_vendor": r"0x[0-9a-f]{4}\n",
    "subsystem_device": r"0x[0-9a-f]{4}\n",
    "revision": r"0x[0-9a-f]{2}\n",
    "class": r"0x[0-9a-f]{6}\n",
    "numa_node": r"-?\d+\n",
    "local_cpulist": r"[\d,-]+\n",
    "sriov_vf_device": r"[0-9a-f]+\n",
    "current_link_speed": r"(\d+\.\d+ GT/s PCIe|Unknown)\n",
}


@pytest.fixture
def q35(scratch: Path) -> BuiltHost:
    return build_tree(load_shipped("q35-numa-nvme-sriov"), scratch)


def _facts(sys_root: Path) -> dict[str, dict[str, str]]:
    """Per function: chosen attributes and link targets (IOMMU group numbers blanked)."""
    facts: dict[str, dict[str, str]] = {}
    devices = sys_root / "bus/pci/devices"
    for name in sorted(os.listdir(devices)):
        folder = devices / name
        entry = {"bus_link": os.readlink(folder)}
        for attribute in ATTRIBUTES:
            if (folder / attribute).is_file():
                entry[attribute] = (folder / attribute).read_text()
        for link in (*LINKS, "iommu_group"):
            if (folder / link).is_symlink():
                entry[link] = re.sub(r"/\d+$", "/N", os.readlink(folder / link))
        facts[name] = entry
    return facts


def test_q35_profile_reads_like_the_real_capture(q35: BuiltHost, sriov_capture: Path) -> None:
    assert _facts(q35.sys_root) == _facts(sriov_capture / "sys")


def test_netdevs_sit_where_the_kernel_puts_them(q35: BuiltHost, sriov_capture: Path) -> None:
    for root in (q35.sys_root, sriov_capture / "sys"):
        eth0 = root / "devices/pci0000:20/0000:20:01.0/0000:22:00.0/net/eth0"
        eth1 = root / "devices/pci0000:40/0000:40:01.0/0000:42:00.0/virtio0/net/eth1"
        assert os.readlink(eth0 / "device") == "../../../0000:22:00.0"
        assert os.readlink(eth1 / "device") == "../../../virtio0"
        assert os.readlink(eth0 / "subsystem") == "../../../../../../class/net"
        assert os.readlink(root / "class/net/eth1") == (
            "../../devices/pci0000:40/0000:40:01.0/0000:42:00.0/virtio0/net/eth1"
        )
        assert (eth0 / "address").read_text() == "52:54:00:00:20:01\n"
        assert (eth0 / "operstate").read_text() == "up\n"
        assert (eth1 / "speed").read_text() == "-1\n"
        assert (eth0 / "phys_port_name").read_text() == ""


def test_driver_and_iommu_directories_link_back(q35: BuiltHost, sriov_capture: Path) -> None:
    for root in (q35.sys_root, sriov_capture / "sys"):
        drivers = root / "bus/pci/drivers"
        assert sorted(os.listdir(drivers / "vfio-pci"))[:1] == ["0000:21:00.3"]
        assert os.readlink(drivers / "nvme/0000:41:00.0") == (
            "../../../../devices/pci0000:40/0000:40:00.0/0000:41:00.0"
        )
        group = Path(os.path.realpath(root / "bus/pci/devices/0000:00:1f.2/iommu_group"))
        assert sorted(os.listdir(group / "devices")) == [
            "0000:00:1f.0",
            "0000:00:1f.2",
            "0000:00:1f.3",
        ]
        assert (root / "devices/pci0000:20/0000:20:00.0/0000:21:00.0/nvme").is_dir()


def test_ari_puts_the_ninth_function_on_the_next_slot(q35: BuiltHost) -> None:
    pf = q35.sys_root / "bus/pci/devices/0000:41:00.0"
    assert os.readlink(pf / "virtfn7") == "../0000:41:01.0"
    vf = q35.function("0000:41:01.0")
    assert (vf.role, vf.pf, vf.vf_index) == ("VF", PciAddress.parse("0000:41:00.0"), 7)
    assert [f.vf_index for f in q35.vfs_of(PciAddress.parse("0000:41:00.0"))] == list(range(8))


@pytest.mark.parametrize(("name", "regex"), sorted(FORMATS.items()))
def test_attribute_formats_follow_the_kernel(q35: BuiltHost, name: str, regex: str) -> None:
    seen = 0
    for function in q35.functions:
        path = q35.sys_root / function.path / name
        if path.exists():
            assert re.fullmatch(regex, path.read_text()), (function.address, name)
            seen += 1
    assert seen > 0


def test_compute_host_numa_cpus_and_hugepages(scratch: Path) -> None:
    host = build_tree(load_shipped("compute-x710"), scratch)
    system = host.sys_root / "devices/system"
    assert (system / "node/online").read_text() == "0-1\n"
    assert (system / "node/node0/cpulist").read_text() == "0-15,32-47\n"
    assert (system / "node/node1/cpulist").read_text() == "16-31,48-63\n"
    assert (system / "node/node0/cpumap").read_text() == "0000ffff,0000ffff\n"
    assert (system / "cpu/online").read_text() == "0-63\n"
    topology = system / "cpu/cpu33/topology"
    assert (topology / "physical_package_id").read_text() == "0\n"
    assert (topology / "core_id").read_text() == "1\n"
    assert (topology / "thread_siblings_list").read_text() == "1,33\n"
    assert os.readlink(system / "node/node1/cpu48") == "../../cpu/cpu48"
    pages = system / "node/node1/hugepages/hugepages-1048576kB"
    assert (pages / "nr_hugepages").read_text() == "64\n"
    assert (pages / "free_hugepages").read_text() == "60\n"
    assert (system / "node/node0/hugepages/hugepages-2048kB/nr_hugepages").read_text() == "8192\n"
    meminfo = (system / "node/node0/meminfo").read_text().splitlines()
    assert meminfo[0] == "Node 0 MemTotal:       201326592 kB"
    assert "Node 0 HugePages_Total:  8192" in meminfo


def test_compute_host_pf_and_vf_netdevs(scratch: Path) -> None:
    host = build_tree(load_shipped("compute-x710"), scratch)
    pf = host.function("0000:11:00.0")
    assert (pf.role, pf.netdevs, pf.driver, pf.numa_node) == ("PF", ("ens1f0",), "i40e", 0)
    vfs = host.vfs_of(pf.address)
    assert [v.netdevs for v in vfs][:2] == [("ens1f0v0",), ("ens1f0v1",)]
    first = host.sys_root / vfs[0].path
    assert vfs[0].address == PciAddress.parse("0000:11:02.0")  # offset 16
    assert (first / "device").read_text() == "0x154c\n"
    assert (first / "current_link_speed").read_text() == "Unknown\n"
    assert (first / "current_link_width").read_text() == "0\n"
    assert (first / "net/ens1f0v0/speed").read_text() == "10000\n"
    pf_dir = host.sys_root / pf.path
    assert (pf_dir / "sriov_offset").read_text() == "16\n"
    assert (host.sys_root / "bus/pci/devices/0000:11:00.1/sriov_offset").read_text() == "79\n"
    assert (pf_dir / "local_cpulist").read_text() == "0-15,32-47\n"
    node1_pf = host.function("0000:81:00.0")
    assert (node1_pf.numa_node, host.vfs_of(node1_pf.address)) == (1, ())


def test_devlink_nics_expose_port_names_and_switch_ids(scratch: Path) -> None:
    host = build_tree(load_shipped("telco-e810-qat"), scratch)
    p0 = host.sys_root / host.function("0000:11:00.0").path / "net/ens2f0"
    p1 = host.sys_root / host.function("0000:11:00.1").path / "net/ens2f1"
    assert (p0 / "phys_port_name").read_text() == "p0\n"
    assert (p1 / "phys_port_name").read_text() == "p1\n"
    assert (p0 / "phys_switch_id").read_text() == (p1 / "phys_switch_id").read_text() != ""


def test_vfio_bound_vfs_have_an_override_and_no_netdev(scratch: Path) -> None:
    host = build_tree(load_shipped("telco-e810-qat"), scratch)
    node2_pf = next(f for f in host.pfs() if f.numa_node == 2)
    vf = host.vfs_of(node2_pf.address)[0]
    assert (vf.driver, vf.netdevs) == ("vfio-pci", ())
    assert (host.sys_root / vf.path / "driver_override").read_text() == "vfio-pci\n"
    qat = [f for f in host.pfs() if f.model == "intel-qat-c62x"]
    assert len(qat) == 3
    assert all(len(host.vfs_of(q.address)) == 16 for q in qat)


def test_82599_vfs_interleave_between_the_two_pfs(scratch: Path) -> None:
    host = build_tree(load_shipped("telco-e810-qat"), scratch)
    pf0, pf1 = (host.function(f"0000:01:00.{n}") for n in (0, 1))
    assert [str(v.address) for v in host.vfs_of(pf0.address)] == [
        "0000:01:10.0",
        "0000:01:10.2",
        "0000:01:10.4",
        "0000:01:10.6",
    ]
    assert str(host.vfs_of(pf1.address)[0].address) == "0000:01:10.1"
    assert (host.sys_root / pf1.path / "sriov_stride").read_text() == "2\n"
    assert pf0.numa_node == -1
    assert pf0.path == "devices/pci0000:00/0000:00:01.0/0000:01:00.0"
    assert (host.sys_root / pf0.path / "local_cpulist").read_text() == "0-95\n"


def test_bench_host_spills_vfs_onto_the_next_bus(scratch: Path) -> None:
    host = build_tree(load_shipped("bench-4x128"), scratch)
    assert Counter(f.role for f in host.functions) == {"PF": 4, "VF": 512, "PCI": 2}
    pf1 = host.function("0000:11:00.1")
    vfs = host.vfs_of(pf1.address)
    assert str(vfs[119].address) == "0000:11:1f.7"
    assert str(vfs[120].address) == "0000:12:00.0"
    assert vfs[120].path == "devices/pci0000:10/0000:10:00.0/0000:12:00.0"
    port = host.sys_root / "bus/pci/devices/0000:10:00.0"
    assert (port / "secondary_bus_number").read_text() == "17\n"
    assert (port / "subordinate_bus_number").read_text() == "18\n"
    assert len(os.listdir(host.sys_root / "bus/pci/devices")) == 518
    assert len(os.listdir(host.sys_root / "kernel/iommu_groups")) == 518


def test_without_iommu_there_are_no_groups(scratch: Path) -> None:
    profile = loads_profile(
        'hostname = "n"\niommu = false\n[cpu]\nsockets = 1\ncores_per_socket = 2\n'
        "[[numa]]\nid = 0\nmemory_mb = 1024\n"
        '[[nvme]]\nmodel = "samsung-pm9a3"\nnuma_node = 0\n',
        "toml",
    )
    host = build_tree(profile, scratch)
    nvme = host.function("0000:11:00.0")
    assert nvme.iommu_group is None
    assert not (host.sys_root / nvme.path / "iommu_group").exists()
    assert not (host.sys_root / "kernel/iommu_groups").exists()


BASE = (
    'hostname = "n"\n[cpu]\nsockets = 1\ncores_per_socket = 2\n[[numa]]\nid = 0\nmemory_mb = 1024\n'
)


@pytest.mark.parametrize(
    ("extra", "field", "rule"),
    [
        (
            '[[nics]]\nmodel = "qemu-e1000e"\nnuma_node = 0\nnetdev = "eth0"\ncount = 2\n',
            "nics[0].netdev",
            "duplicate",
        ),
        (
            '[[nics]]\nmodel = "qemu-e1000e"\nnuma_node = 0\nnetdev = "averyveryverylongname"\n',
            "nics[0].netdev",
            "length",
        ),
        (
            '[[nvme]]\nmodel = "samsung-pm9a3"\nnuma_node = 0\nslot = 1\n'
            '[[nvme]]\nmodel = "samsung-pm9a3"\nnuma_node = 0\nslot = 1\n',
            "nvme[1].slot",
            "slot",
        ),
        (
            '[[onboard]]\nmodel = "ich9-lpc"\naddress = "00:1f.0"\n'
            '[[onboard]]\nmodel = "ich9-ahci"\naddress = "00:1f.0"\n',
            "onboard",
            "duplicate",
        ),
    ],
)
def test_layout_conflicts_are_profile_errors(extra: str, field: str, rule: str) -> None:
    profile = loads_profile(BASE + extra, "toml")
    with pytest.raises(InvalidProfile) as caught:
        plan_functions(profile)
    assert (caught.value.fields["field"], caught.value.fields["rule"]) == (field, rule)


TWO_NODES = """
hostname = "n"
[cpu]
sockets = 2
cores_per_socket = 2
[[numa]]
id = 0
socket = 0
memory_mb = 1024
pci_root_bus = 0x40
[[numa]]
id = 1
socket = 1
memory_mb = 1024
pci_root_bus = 0x40
[[nvme]]
model = "samsung-pm9a3"
numa_node = 1
[[nvme]]
model = "samsung-pm9a3"
numa_node = 0
"""


def test_explicit_root_bus_may_not_overlap_earlier_buses() -> None:
    with pytest.raises(InvalidProfile) as caught:
        plan_functions(loads_profile(TWO_NODES, "toml"))
    assert caught.value.fields["field"] == "numa[1].pci_root_bus"
    assert caught.value.fields["rule"] == "bus_overlap"
