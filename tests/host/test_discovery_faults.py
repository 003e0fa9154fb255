"""Faults never crash a scan: damaged copies of the real capture, and races.

The races use a reader subclass that really deletes a device's directory at the moment
discovery looks at it: the fault is at the OS boundary (the filesystem), discovery runs
unchanged.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pcifleet.domain.device import DeviceType
from pcifleet.host.discovery import scan
from pcifleet.host.model import HostScan
from pcifleet.host.sysfs import StrPath, SysfsReader

BUS = Path("sys/bus/pci/devices")


def device_dir(root: Path, name: str) -> Path:
    return (root / BUS / name).resolve()


def remove_function(root: Path, name: str) -> None:
    """What the kernel does on hot unplug: the device directory and its bus link go."""
    shutil.rmtree(device_dir(root, name))
    (root / BUS / name).unlink()


def subjects(result: HostScan) -> dict[str, str]:
    return {w.subject: w.message for w in result.warnings}


class VanishAfterListing(SysfsReader):
    """Hot unplug of ``victim`` right after the bus directory was listed."""

    def __init__(self, root: Path, victim: str) -> None:
        super().__init__(root)
        self.victim = victim

    def list_dir(self, path: StrPath) -> list[str] | None:
        names = super().list_dir(path)
        if os.fspath(path).endswith("bus/pci/devices") and (self.root / BUS / self.victim).exists():
            remove_function(self.root, self.victim)
        return names


class VanishWhileReading(SysfsReader):
    """Hot unplug of ``victim`` between the directory check and reading its ids."""

    def __init__(self, root: Path, victim: str) -> None:
        super().__init__(root)
        self.victim = victim

    def read_hex(self, path: StrPath) -> int | None:
        if os.fspath(path).endswith(f"{self.victim}/vendor"):
            remove_function(self.root, self.victim)
        return super().read_hex(path)


@pytest.mark.parametrize("reader_class", [VanishAfterListing, VanishWhileReading])
def test_device_vanishing_mid_scan_is_skipped_with_warning(
    sriov_copy: Path, reader_class: type[VanishAfterListing | VanishWhileReading]
) -> None:
    result = scan(reader_class(sriov_copy, "0000:41:00.7"), pci_ids=False)
    assert len(result) == 25
    assert result.get("0000:41:00.7") is None
    assert "vanished" in subjects(result)["0000:41:00.7"]
    # its PF and siblings are intact; the PF's VF list only returns what is there
    assert len(result.vfs_of(result.get("0000:41:00.0").address)) == 7  # type: ignore[union-attr]
    assert result.get("0000:41:01.0").vf_index == 7  # type: ignore[union-attr]


MALFORMED = [
    # (function, attribute, content, text expected in its warning)
    ("0000:21:00.1", "local_cpulist", "a-b\n", "local_cpulist"),
    ("0000:21:00.2", "numa_node", "zero\n", "not a decimal integer"),
    ("0000:42:00.0", "class", "ethernet\n", "class"),
    ("0000:41:00.2", "revision", "0xzz\n", "not a hex number"),
    ("0000:21:00.0", "sriov_numvfs", "four\n", "sriov_numvfs"),
]


@pytest.fixture(scope="module")
def damaged(
    sriov_capture: Path,
    tmp_path_factory: pytest.TempPathFactory,
    copy_tree: Callable[[Path, Path], Path],
) -> HostScan:
    """One copy of the capture with every fault below applied to different functions."""
    root = copy_tree(sriov_capture, tmp_path_factory.mktemp("damaged") / "capture")
    for address, attribute, content, _ in MALFORMED:
        (device_dir(root, address) / attribute).write_text(content)
    # unreadable: reading a directory fails (EISDIR), like an attribute the kernel refuses
    for path in (
        device_dir(root, "0000:21:00.0") / "numa_node",
        device_dir(root, "0000:22:00.0") / "net/eth0/phys_port_name",
    ):
        path.unlink()
        path.mkdir()
    (device_dir(root, "0000:20:01.0") / "vendor").write_text("intel\n")
    (device_dir(root, "0000:41:00.0") / "virtfn7").unlink()
    (root / "sys/devices/system/node/node1/cpulist").write_text("1-x\n")
    # a VMD-style function in domain 0x10000, which does not fit dddd:bb:ss.f, and junk
    source = device_dir(root, "0000:00:1f.3")
    shutil.copytree(source, root / "sys/devices/pci10000:00/10000:00:02.0", symlinks=True)
    (root / BUS / "10000:00:02.0").symlink_to("../../../devices/pci10000:00/10000:00:02.0")
    (root / BUS / "not-an-address").symlink_to("../../../devices/pci0000:00")
    return scan(SysfsReader(root), pci_ids=False)


def messages(result: HostScan, subject: str) -> str:
    return " | ".join(w.message for w in result.warnings if w.subject == subject)


@pytest.mark.parametrize(("address", "attribute", "content", "expected"), MALFORMED)
def test_malformed_optional_attribute_is_a_warning(
    damaged: HostScan, address: str, attribute: str, content: str, expected: str
) -> None:
    assert damaged.get(address) is not None
    assert expected in messages(damaged, address)
    assert attribute in messages(damaged, address)


def test_malformed_fields_read_as_empty(damaged: HostScan) -> None:
    assert damaged.get("0000:21:00.1").local_cpus == frozenset()  # type: ignore[union-attr]
    assert damaged.get("0000:21:00.2").numa_node is None  # type: ignore[union-attr]
    assert damaged.get("0000:42:00.0").pci_class is None  # type: ignore[union-attr]
    assert damaged.get("0000:41:00.2").revision is None  # type: ignore[union-attr]


def test_unreadable_attribute_leaves_field_empty_with_warning(damaged: HostScan) -> None:
    pf = damaged.get("0000:21:00.0")
    assert pf is not None and pf.role is DeviceType.PF
    assert pf.numa_node is None
    assert "numa_node" in messages(damaged, "0000:21:00.0")
    assert "cannot be read" in messages(damaged, "0000:21:00.0")


def test_malformed_numvfs_and_missing_virtfn(damaged: HostScan) -> None:
    pf0, pf1 = damaged.get("0000:21:00.0"), damaged.get("0000:41:00.0")
    assert pf0 is not None and pf0.sriov is not None and pf0.sriov.vfs == ()
    assert pf1 is not None and pf1.sriov is not None and len(pf1.sriov.vfs) == 7
    assert "sriov_numvfs is 8 but 7 virtfn links" in messages(damaged, "0000:41:00.0")
    # the orphaned VF still names its PF but has no index the PF vouches for
    orphan = damaged.get("0000:41:01.0")
    assert orphan is not None and orphan.role is DeviceType.VF and orphan.vf_index is None


def test_malformed_vendor_skips_the_function(damaged: HostScan) -> None:
    assert damaged.get("0000:20:01.0") is None
    assert "skipped" in messages(damaged, "0000:20:01.0")


def test_32bit_domain_and_junk_names_are_skipped_with_warning(damaged: HostScan) -> None:
    assert "wider than 16 bits" in messages(damaged, "10000:00:02.0")
    assert "not a PCI address" in messages(damaged, "not-an-address")
    assert all(f.address.domain == 0 for f in damaged)
    assert len(damaged) == 25  # 26 functions of the capture minus the bad vendor


def test_netdev_attribute_refused_by_driver_is_not_a_warning(damaged: HostScan) -> None:
    (eth0,) = damaged.get("0000:22:00.0").netdevs  # type: ignore[union-attr]
    assert eth0.phys_port_name is None and eth0.mac == "52:54:00:00:20:01"
    assert messages(damaged, "0000:22:00.0") == ""


def test_malformed_numa_node_topology_is_a_warning(damaged: HostScan) -> None:
    assert [c.id for c in damaged.numa_cells] == [0]
    assert "NUMA node 1" in messages(damaged, "host")


@pytest.mark.parametrize("layout", ["empty", "no-bus", "bus-is-a-file"])
def test_tree_without_pci_bus_yields_empty_scan(tmp_path: Path, layout: str) -> None:
    if layout == "no-bus":
        (tmp_path / "sys/devices/system").mkdir(parents=True)
    if layout == "bus-is-a-file":
        (tmp_path / "sys/bus/pci").mkdir(parents=True)
        (tmp_path / "sys/bus/pci/devices").write_text("")
    result = scan(SysfsReader(tmp_path), pci_ids=False)
    assert len(result) == 0
    assert result.numa_cells == ()
    assert result.warnings and result.warnings[0].subject == "host"
