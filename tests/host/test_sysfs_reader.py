"""The rooted sysfs reader and the timed writer, on small trees made in a temp directory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pcifleet.domain.errors import SriovConfigError, SysfsError
from pcifleet.host.pciclass import DeviceKind, PciClass
from pcifleet.host.pciids import PciIds
from pcifleet.host.sysfs import RealSysfsWriter, SysfsReader, SysfsWriter
from pcifleet.host.topology import parse_cpulist


@pytest.fixture
def tree(tmp_path: Path) -> SysfsReader:
    dev = tmp_path / "sys/devices/pci0000:00/0000:00:03.0"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x8086\n")
    (dev / "numa_node").write_text("-1\n")
    (dev / "sriov_vf_device").write_text("154c\n")
    (dev / "empty").write_text("")
    (dev / "bad_int").write_text("12g\n")
    (dev / "binary").write_bytes(b"\xff\xfe\n")
    (dev / "a_dir").mkdir()
    (dev / "driver").symlink_to("../../../bus/pci/drivers/i40e")
    bus = tmp_path / "sys/bus/pci/devices"
    bus.mkdir(parents=True)
    (bus / "0000:00:03.0").symlink_to("../../../devices/pci0000:00/0000:00:03.0")
    return SysfsReader(tmp_path)


def dev(reader: SysfsReader, attribute: str) -> str:
    return reader.path("sys", "bus", "pci", "devices", "0000:00:03.0", attribute)


@pytest.mark.parametrize(
    ("attribute", "text", "integer", "hexadecimal"),
    [
        ("vendor", "0x8086", None, 0x8086),
        ("numa_node", "-1", -1, None),
        ("sriov_vf_device", "154c", None, 0x154C),
        ("empty", None, None, None),
        ("missing", None, None, None),
    ],
)
def test_reads(
    tree: SysfsReader,
    attribute: str,
    text: str | None,
    integer: int | None,
    hexadecimal: int | None,
) -> None:
    assert tree.read_text(dev(tree, attribute)) == text
    if integer is not None or text is None:
        assert tree.read_int(dev(tree, attribute)) == integer
    if hexadecimal is not None or text is None:
        assert tree.read_hex(dev(tree, attribute)) == hexadecimal


@pytest.mark.parametrize(
    ("attribute", "method", "rule"),
    [
        ("bad_int", "read_int", "int"),
        ("vendor", "read_int", "int"),
        ("bad_int", "read_hex", "hex"),
        ("a_dir", "read_text", "unreadable"),
        ("binary", "read_text", "encoding"),
    ],
)
def test_errors_name_path_field_and_rule(
    tree: SysfsReader, attribute: str, method: str, rule: str
) -> None:
    with pytest.raises(SysfsError) as caught:
        getattr(tree, method)(dev(tree, attribute))
    assert caught.value.fields["rule"] == rule
    assert caught.value.fields["field"] == attribute
    assert caught.value.fields["path"] == f"/sys/bus/pci/devices/0000:00:03.0/{attribute}"
    assert attribute in str(caught.value)
    assert tree.try_text(dev(tree, attribute)) in (None, "12g", "0x8086")


def test_links_and_listing(tree: SysfsReader) -> None:
    assert tree.link_name(dev(tree, "driver")) == "i40e"
    assert tree.link_name(dev(tree, "vendor")) is None  # not a link
    assert tree.link_name(dev(tree, "nothing")) is None
    target = tree.link_target(tree.path("sys", "bus", "pci", "devices", "0000:00:03.0"))
    assert target == tree.path("sys", "devices", "pci0000:00", "0000:00:03.0")
    assert tree.list_dir(tree.path("sys", "bus", "pci", "devices")) == ["0000:00:03.0"]
    assert tree.list_dir(tree.path("sys", "class", "net")) is None
    assert tree.exists(dev(tree, "driver"))  # dangling links exist too
    assert tree.relative(dev(tree, "vendor")) == "/sys/bus/pci/devices/0000:00:03.0/vendor"


def test_identity_changes_when_directory_is_recreated(tmp_path: Path) -> None:
    reader = SysfsReader(tmp_path)
    directory = tmp_path / "dev"
    directory.mkdir()
    (directory / "keep").write_text("x")  # occupy an inode so the next one differs
    first = reader.identity(directory)
    assert first is not None and reader.identity(directory) == first
    (directory / "keep").unlink()
    directory.rmdir()
    directory.mkdir()
    assert reader.identity(directory) not in (None, first)
    directory.rmdir()
    assert reader.identity(directory) is None


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0-3,8,10-11", {0, 1, 2, 3, 8, 10, 11}), ("1", {1}), ("", set()), ("0-1\n", {0, 1})],
)
def test_parse_cpulist(text: str, cpus: set[int]) -> None:
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["a", "3-1", "1-", "-2", "0,,x"])
def test_parse_cpulist_rejects(text: str) -> None:
    with pytest.raises(SysfsError) as caught:
        parse_cpulist(text, field_name="local_cpulist")
    assert caught.value.fields["rule"] == "cpulist"
    assert "local_cpulist" in str(caught.value)


@given(st.frozensets(st.integers(min_value=0, max_value=511), max_size=64))
def test_cpulist_round_trip(cpus: frozenset[int]) -> None:
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and cpu - 1 in cpus:
            low = ranges[-1].split("-")[0]
            ranges[-1] = f"{low}-{cpu}"
        else:
            ranges.append(str(cpu))
    assert parse_cpulist(",".join(ranges)) == cpus


@pytest.mark.parametrize(
    ("code", "kind", "name"),
    [
        (0x020000, DeviceKind.NETWORK, "Ethernet controller"),
        (0x030000, DeviceKind.DISPLAY, "VGA compatible controller"),
        (0x030200, DeviceKind.DISPLAY, "3D controller"),
        (0x038000, DeviceKind.DISPLAY, "Display controller"),
        (0x120000, DeviceKind.ACCELERATOR, "Processing accelerator"),
        (0x0B4000, DeviceKind.ACCELERATOR, "Processor"),
        (0x010802, DeviceKind.NVME, "Non-Volatile memory controller (NVMe)"),
        (0x010601, DeviceKind.STORAGE, "SATA controller"),
        (0x100000, DeviceKind.ENCRYPTION, "Network and computing encryption device"),
        (0x020700, DeviceKind.NETWORK, "Infiniband controller"),
        (0x060400, DeviceKind.BRIDGE, "PCI bridge"),
        (0xEE0100, DeviceKind.OTHER, "Unknown class ee01"),
    ],
)
def test_class_decoding(code: int, kind: DeviceKind, name: str) -> None:
    decoded = PciClass.parse(f"{code:#08x}")
    assert (decoded.kind, decoded.name, decoded.hex) == (kind, name, f"{code:06x}")


@pytest.mark.parametrize("text", ["0xgg0000", "ethernet", "0x1000000"])
def test_class_rejects(text: str) -> None:
    with pytest.raises(SysfsError) as caught:
        PciClass.parse(text)
    assert caught.value.fields["field"] == "class"


PCI_IDS_SAMPLE = """\
# comment
8086  Intel Corporation
\t1572  Ethernet Controller X710 for 10GbE SFP+
\t\t8086 0001  Ethernet Converged Network Adapter X710-4
\t154c  Ethernet Virtual Function 700 Series
15b3  Mellanox Technologies
\t101b  MT28908 Family [ConnectX-6]
C 02  Network controller
\t00  Ethernet controller
"""


def test_pci_ids_lookup(tmp_path: Path) -> None:
    path = tmp_path / "pci.ids"
    path.write_text(PCI_IDS_SAMPLE)
    ids = PciIds(path)
    assert ids.vendor("8086") == "Intel Corporation"
    assert ids.vendor("0x15B3") == "Mellanox Technologies"
    assert ids.device("8086", "154c") == "Ethernet Virtual Function 700 Series"
    assert ids.device("8086", "0001") is None  # a subsystem line is not a device
    assert ids.device("1234", "0001") is None
    assert ids.vendor("c 02") is None and ids.available


@pytest.mark.parametrize("where", ["missing", "none"])
def test_pci_ids_absent_is_graceful(tmp_path: Path, where: str) -> None:
    ids = PciIds.find([tmp_path / "nope"]) if where == "missing" else PciIds(None)
    assert not ids.available
    assert ids.vendor("8086") is None and ids.device("8086", "1572") is None


def test_real_writer_writes(tmp_path: Path) -> None:
    target = tmp_path / "sriov_numvfs"
    target.write_text("0\n")
    writer: SysfsWriter = RealSysfsWriter(timeout=5)
    writer.write(target, "4")
    assert target.read_text() == "4"


def test_real_writer_failure_is_sriov_config_error(tmp_path: Path) -> None:
    with pytest.raises(SriovConfigError) as caught:
        RealSysfsWriter(timeout=5).write(tmp_path / "missing" / "sriov_numvfs", "4")
    assert caught.value.fields["rule"] == "write_failed"
    assert caught.value.fields["field"] == "sriov_numvfs"


def test_real_writer_gives_up_on_a_blocked_write(tmp_path: Path) -> None:
    # opening a FIFO for writing blocks until a reader appears: a write that never returns
    fifo = tmp_path / "sriov_numvfs"
    os.mkfifo(fifo)
    with pytest.raises(SriovConfigError) as caught:
        RealSysfsWriter(timeout=0.2).write(fifo, "8")
    assert caught.value.fields["rule"] == "write_timeout"
    assert "did not finish within 0.2 s" in str(caught.value)
    # release the stuck worker thread so nothing outlives the test
    with open(fifo, encoding="ascii") as reader:
        assert reader.read() == "8"
    for thread in threading.enumerate():
        if thread.name == "sysfs-write":
            thread.join(timeout=5)
