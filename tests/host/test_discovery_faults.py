"""Faults never crash a scan: damaged copies of the real capture, and races.

The races use a reader subclass that really deletes a device's directory at the moment
discovery looks at it: the fault is at the OS boundary (the filesystem), discovery runs
unchanged.
"""

from __future__ import annotations

import os
import shutil
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


def test_unreadable_attribute_leaves_field_empty_with_warning(sriov_copy: Path) -> None:
    numa = device_dir(sriov_copy, "0000:21:00.0") / "numa_node"
    numa.unlink()
    numa.mkdir()  # reading it now fails with EISDIR, like an attribute the kernel refuses
    result = scan(SysfsReader(sriov_copy), pci_ids=False)
    pf = result.get("0000:21:00.0")
    assert pf is not None and pf.role is DeviceType.PF
    assert pf.numa_node is None
    assert pf.sriov is not None and pf.sriov.numvfs == 4
    message = subjects(result)["0000:21:00.0"]
    assert "numa_node" in message and "cannot be read" in message


@pytest.mark.parametrize(
    ("address", "attribute", "content", "expect_in_warning"),
    [
        ("0000:21:00.1", "local_cpulist", "a-b\n", "local_cpulist"),
        ("0000:21:00.1", "numa_node", "zero\n", "not a decimal integer"),
        ("0000:22:00.0", "class", "ethernet\n", "class"),
        ("0000:41:00.2", "revision", "0xzz\n", "not a hex number"),
    ],
)
def test_malformed_optional_attribute_is_a_warning(
    sriov_copy: Path, address: str, attribute: str, content: str, expect_in_warning: str
) -> None:
    (device_dir(sriov_copy, address) / attribute).write_text(content)
    result = scan(SysfsReader(sriov_copy), pci_ids=False)
    assert len(result) == 26
    assert result.get(address) is not None
    assert expect_in_warning in subjects(result)[address]


def test_malformed_vendor_skips_the_function(sriov_copy: Path) -> None:
    (device_dir(sriov_copy, "0000:22:00.0") / "vendor").write_text("intel\n")
    result = scan(SysfsReader(sriov_copy), pci_ids=False)
    assert result.get("0000:22:00.0") is None
    assert "skipped" in subjects(result)["0000:22:00.0"]
    assert len(result) == 25


def test_malformed_numvfs_and_missing_virtfn(sriov_copy: Path) -> None:
    (device_dir(sriov_copy, "0000:21:00.0") / "sriov_numvfs").write_text("four\n")
    (device_dir(sriov_copy, "0000:41:00.0") / "virtfn7").unlink()
    result = scan(SysfsReader(sriov_copy), pci_ids=False)
    pf0, pf1 = result.get("0000:21:00.0"), result.get("0000:41:00.0")
    assert pf0 is not None and pf0.sriov is not None and pf0.sriov.vfs == ()
    assert pf1 is not None and pf1.sriov is not None and len(pf1.sriov.vfs) == 7
    warnings = [str(w) for w in result.warnings]
    assert any("0000:21:00.0" in w and "sriov_numvfs" in w for w in warnings)
    assert any("sriov_numvfs is 8 but 7 virtfn links" in w for w in warnings)
    # the orphaned VF still names its PF but has no index the PF vouches for
    orphan = result.get("0000:41:01.0")
    assert orphan is not None and orphan.role is DeviceType.VF and orphan.vf_index is None


def test_32bit_domain_is_skipped_with_warning(sriov_copy: Path) -> None:
    # a VMD-style function in domain 0x10000, which does not fit dddd:bb:ss.f
    source = device_dir(sriov_copy, "0000:22:00.0")
    target = sriov_copy / "sys/devices/pci10000:00/10000:00:02.0"
    shutil.copytree(source, target, symlinks=True)
    (sriov_copy / BUS / "10000:00:02.0").symlink_to("../../../devices/pci10000:00/10000:00:02.0")
    (sriov_copy / BUS / "not-an-address").symlink_to("../../../devices/pci0000:00")
    result = scan(SysfsReader(sriov_copy), pci_ids=False)
    assert len(result) == 26
    warned = subjects(result)
    assert "wider than 16 bits" in warned["10000:00:02.0"]
    assert "not a PCI address" in warned["not-an-address"]


def test_netdev_attribute_refused_by_driver_is_not_a_warning(sriov_copy: Path) -> None:
    netdev = device_dir(sriov_copy, "0000:22:00.0") / "net/eth0"
    (netdev / "phys_port_name").unlink()
    (netdev / "phys_port_name").mkdir()  # EOPNOTSUPP-like: the read fails
    result = scan(SysfsReader(sriov_copy), pci_ids=False)
    (eth0,) = result.get("0000:22:00.0").netdevs  # type: ignore[union-attr]
    assert eth0.phys_port_name is None and eth0.mac == "52:54:00:00:20:01"
    assert result.warnings == ()


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


def test_malformed_numa_node_topology_is_a_warning(sriov_copy: Path) -> None:
    node1 = sriov_copy / "sys/devices/system/node/node1"
    (node1 / "cpulist").write_text("1-x\n")
    result = scan(SysfsReader(sriov_copy), pci_ids=False)
    assert [c.id for c in result.numa_cells] == [0]
    assert any("NUMA node 1" in w.message for w in result.warnings)
