"""A fake tree built from the sim's q35 profile reads the same way as the real capture it
mimics. IOMMU group numbers are the kernel's enumeration order, so only their structure is
compared (one group per VF and per endpoint, the ICH9 functions sharing one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcifleet.host.discovery import scan
from pcifleet.host.model import HostScan, PciFunction
from pcifleet.host.sysfs import SysfsReader
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import build_tree


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> HostScan:
    root = tmp_path_factory.mktemp("q35-built")
    build_tree(load_shipped("q35-numa-nvme-sriov"), root)
    return scan(SysfsReader(root), pci_ids=False)


@pytest.fixture(scope="module")
def captured(sriov_capture: Path) -> HostScan:
    return scan(SysfsReader(sriov_capture), pci_ids=False)


def facts(function: PciFunction) -> dict[str, object]:
    sriov = function.sriov
    return {
        "ids": (function.vendor_id, function.device_id),
        "subsystem": (function.subsystem_vendor_id, function.subsystem_device_id),
        "revision": function.revision,
        "class": function.pci_class,
        "role": function.role,
        "driver": function.driver,
        "driver_override": function.driver_override,
        "numa_node": function.numa_node,
        "local_cpus": function.local_cpus,
        "physfn": function.physfn,
        "vf_index": function.vf_index,
        "sriov": None
        if sriov is None
        else (sriov.totalvfs, sriov.numvfs, sriov.vf_device_id, sriov.offset, sriov.stride),
        "vfs": None if sriov is None else sriov.vfs,
        "netdevs": [(n.name, n.mac, n.mtu, n.operstate) for n in function.netdevs],
        "has_iommu_group": function.iommu_group is not None,
    }


def test_same_functions(built: HostScan, captured: HostScan) -> None:
    assert [f.address for f in built] == [f.address for f in captured]
    assert built.warnings == ()


@pytest.mark.parametrize(
    "address",
    [
        "0000:00:00.0",
        "0000:00:1f.2",
        "0000:20:00.0",
        "0000:21:00.0",
        "0000:21:00.3",
        "0000:22:00.0",
        "0000:41:00.0",
        "0000:41:00.5",
        "0000:41:01.0",
        "0000:42:00.0",
    ],
)
def test_function_reads_the_same(built: HostScan, captured: HostScan, address: str) -> None:
    ours, real = built.get(address), captured.get(address)
    assert ours is not None and real is not None
    assert facts(ours) == facts(real)


def test_every_function_reads_the_same(built: HostScan, captured: HostScan) -> None:
    differing = [
        str(f.address)
        for f in captured
        if facts(f) != facts(built.get(f.address))  # type: ignore[arg-type]
    ]
    assert differing == []


def test_iommu_group_structure(built: HostScan, captured: HostScan) -> None:
    def partition(result: HostScan) -> set[frozenset[str]]:
        groups: dict[int, set[str]] = {}
        for f in result:
            if f.iommu_group is not None:
                groups.setdefault(f.iommu_group, set()).add(str(f.address))
        return {frozenset(members) for members in groups.values()}

    assert partition(built) == partition(captured)


def test_numa_cells(built: HostScan, captured: HostScan) -> None:
    assert [(c.id, c.cpus) for c in built.numa_cells] == [
        (c.id, c.cpus) for c in captured.numa_cells
    ]
