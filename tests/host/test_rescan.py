"""Rescans and diffs over a fake tree built from the sim's q35 profile, changed by the fake
kernel (VF counts) or by hand (driver links, netdev state) as the real kernel would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.host.discovery import scan
from pcifleet.host.model import HostScan
from pcifleet.host.rescan import FieldChange, Rescanner, ScanDiff, diff
from pcifleet.host.sysfs import SysfsReader
from pcifleet.sim.kernel import FakeKernel
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import build_tree

PF = PciAddress.parse("0000:41:00.0")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    build_tree(load_shipped("q35-numa-nvme-sriov"), tmp_path)
    return tmp_path


def device(root: Path, address: str) -> Path:
    return (root / "sys/bus/pci/devices" / address).resolve()


def changes(result: ScanDiff, address: str) -> dict[str, FieldChange]:
    return {c.field: c for c in result.changes_for(PciAddress.parse(address))}


def test_first_rescan_adds_everything_then_nothing_changes(root: Path) -> None:
    rescanner = Rescanner(SysfsReader(root), pci_ids=False)
    first, added = rescanner.rescan()
    assert len(added.added) == len(first) == 26
    assert added.removed == ()
    second, nothing = rescanner.rescan()
    assert nothing.empty
    assert second == first
    # unchanged functions keep their records: the diff is identity checks
    assert all(a is b for a, b in zip(first, second, strict=True))


def test_vf_count_change_is_added_removed_and_changed(root: Path) -> None:
    rescanner = Rescanner(SysfsReader(root), pci_ids=False)
    rescanner.scan()
    numvfs = device(root, str(PF)) / "sriov_numvfs"
    with FakeKernel(root) as kernel:
        kernel.write(numvfs, "0")
        kernel.write(numvfs, "2")
        _, fewer = rescanner.rescan()
        kernel.write(numvfs, "0")
        kernel.write(numvfs, "5")
        _, more = rescanner.rescan()
    assert fewer.added == ()
    assert [str(a) for a in fewer.removed] == [
        "0000:41:00.3",
        "0000:41:00.4",
        "0000:41:00.5",
        "0000:41:00.6",
        "0000:41:00.7",
        "0000:41:01.0",
    ]
    change = changes(fewer, str(PF))["sriov.numvfs"]
    assert (change.old, change.new) == (8, 2)
    assert "sriov.vfs" in changes(fewer, str(PF))
    assert [str(a) for a in more.added] == ["0000:41:00.3", "0000:41:00.4", "0000:41:00.5"]
    assert more.removed == ()
    assert changes(more, str(PF))["sriov.numvfs"].new == 5


def test_driver_rebind_and_netdev_state(root: Path) -> None:
    rescanner = Rescanner(SysfsReader(root), pci_ids=False)
    rescanner.scan()
    vf = device(root, "0000:41:00.7")
    (vf / "driver").symlink_to("../../../../bus/pci/drivers/vfio-pci")
    (vf / "driver_override").write_text("vfio-pci\n")
    eth0 = device(root, "0000:22:00.0") / "net/eth0"
    (eth0 / "operstate").write_text("down\n")
    (eth0 / "mtu").write_text("9000\n")
    _, result = rescanner.rescan()
    assert result.added == result.removed == ()
    vf_changes = changes(result, "0000:41:00.7")
    assert (vf_changes["driver"].old, vf_changes["driver"].new) == (None, "vfio-pci")
    assert vf_changes["driver_override"].new == "vfio-pci"
    nic = changes(result, "0000:22:00.0")
    assert (nic["netdev.eth0.operstate"].old, nic["netdev.eth0.operstate"].new) == ("up", "down")
    assert nic["netdev.eth0.mtu"].new == 9000
    assert "down" in str(nic["netdev.eth0.operstate"])


def test_hot_unplug_and_replug_rereads_static_facts(root: Path) -> None:
    reader = SysfsReader(root)
    rescanner = Rescanner(reader, pci_ids=False)
    rescanner.scan()
    nic = device(root, "0000:22:00.0")
    saved = root / "saved-nic"
    shutil.copytree(nic, saved, symlinks=True)
    shutil.rmtree(nic)
    _, gone = rescanner.rescan()
    assert [str(a) for a in gone.removed] == ["0000:22:00.0"]
    assert any(w.subject == "0000:22:00.0" for w in rescanner.last.warnings)  # type: ignore[union-attr]
    # plugged back into a slot with a different NUMA affinity: a new directory
    shutil.copytree(saved, nic, symlinks=True)
    (nic / "numa_node").write_text("1\n")
    _, back = rescanner.rescan()
    assert [str(a) for a in back.added] == ["0000:22:00.0"]
    assert rescanner.last.get("0000:22:00.0").numa_node == 1  # type: ignore[union-attr]


def test_static_fact_changed_in_place_needs_full_scan(root: Path) -> None:
    """The documented trade-off: static facts are trusted while the directory lives."""
    reader = SysfsReader(root)
    rescanner = Rescanner(reader, pci_ids=False)
    rescanner.scan()
    (device(root, "0000:22:00.0") / "numa_node").write_text("1\n")
    assert rescanner.rescan()[1].empty
    full = scan(reader, pci_ids=False)
    assert full.get("0000:22:00.0").numa_node == 1  # type: ignore[union-attr]
    _, refreshed = rescanner.rescan(full=True)
    change = refreshed.changes_for(PciAddress.parse("0000:22:00.0"))
    assert [(c.field, c.old, c.new) for c in change] == [("numa_node", 0, 1)]


def test_topology_changes_are_reported(root: Path) -> None:
    rescanner = Rescanner(SysfsReader(root), pci_ids=False)
    before = rescanner.scan()
    pool = root / "sys/devices/system/node/node0/hugepages/hugepages-2048kB"
    (pool / "nr_hugepages").write_text("512\n")
    (pool / "free_hugepages").write_text("500\n")
    after, result = rescanner.rescan()
    (change,) = result.host
    assert change.field == "numa.0.hugepages"
    assert after.topology.cell(0) != before.topology.cell(0)
    assert not result.empty and result.changed == ()


def test_diff_of_identical_scans_is_empty() -> None:
    empty = HostScan(())
    assert diff(empty, empty).empty
    assert diff(empty, empty).changes_for(PF) == ()
