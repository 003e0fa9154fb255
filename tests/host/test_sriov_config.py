"""Setting VF counts through the sim's FakeKernel over a copy of the real no-VF capture."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import SriovConfigError
from pcifleet.host.discovery import scan
from pcifleet.host.sriov import SriovConfigurator
from pcifleet.host.sysfs import SysfsReader, SysfsWriter
from pcifleet.sim.kernel import FakeKernel

PF = "0000:41:00.0"


class RecordingKernel:
    """The fake kernel, noting each write (attribute, value) as a test needs to see them."""

    def __init__(self, kernel: FakeKernel) -> None:
        self.kernel = kernel
        self.writes: list[tuple[str, str]] = []

    def write(self, path: Path, value: str) -> None:
        self.writes.append((path.name, value))
        self.kernel.write(path, value)


class BlockedWriter:
    """A write that never returns until released (a driver stuck in the kernel)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, path: Path, value: str) -> None:
        self.release.wait(10)


@pytest.fixture
def novfs_root(
    novfs_capture: Path, tmp_path: Path, copy_tree: Callable[[Path, Path], Path]
) -> Path:
    return copy_tree(novfs_capture, tmp_path / "host")


@pytest.fixture
def kernel(novfs_root: Path) -> Iterator[RecordingKernel]:
    with FakeKernel(novfs_root) as fake:
        yield RecordingKernel(fake)


def configurator(root: Path, writer: SysfsWriter, **kwargs: float) -> SriovConfigurator:
    return SriovConfigurator(SysfsReader(root), writer, poll_interval=0.02, **kwargs)


def test_enable_then_change_writes_zero_first(novfs_root: Path, kernel: RecordingKernel) -> None:
    config = configurator(novfs_root, kernel)
    result = config.set_num_vfs(PF, 8)
    assert result.changed and result.numvfs == 8
    assert [str(a) for _, a in result.vfs][-1] == "0000:41:01.0"  # ARI: 8th VF, next slot
    assert kernel.writes == [("sriov_numvfs", "8")]  # from 0: nothing to clear

    found = scan(SysfsReader(novfs_root), pci_ids=False)
    pf = found.get(PF)
    assert pf is not None and pf.sriov is not None and pf.sriov.numvfs == 8
    assert [vf.vf_index for vf in found.vfs_of(pf.address)] == list(range(8))

    kernel.writes.clear()
    result = config.set_num_vfs(PciAddress.parse(PF), 3)
    assert kernel.writes == [("sriov_numvfs", "0"), ("sriov_numvfs", "3")]
    assert [str(a) for _, a in result.vfs] == ["0000:41:00.1", "0000:41:00.2", "0000:41:00.3"]
    assert scan(SysfsReader(novfs_root), pci_ids=False).get("0000:41:00.4") is None

    kernel.writes.clear()
    assert config.set_num_vfs(PF, 0).vfs == ()
    assert kernel.writes == [("sriov_numvfs", "0")]


def test_same_count_writes_nothing(novfs_root: Path, kernel: RecordingKernel) -> None:
    config = configurator(novfs_root, kernel)
    config.set_num_vfs("0000:21:00.0", 2)
    kernel.writes.clear()
    result = config.set_num_vfs("0000:21:00.0", 2)
    assert not result.changed and len(result.vfs) == 2
    assert kernel.writes == []


@pytest.mark.parametrize(
    ("pf", "count", "field", "rule", "text"),
    [
        (PF, 9, "sriov_numvfs", "range", "between 0 and sriov_totalvfs (8)"),
        ("0000:21:00.0", 5, "sriov_numvfs", "range", "sriov_totalvfs (4)"),
        (PF, -1, "sriov_numvfs", "range", "cannot enable -1 VFs"),
        ("0000:22:00.0", 1, "sriov_totalvfs", "not_a_pf", "not an SR-IOV physical function"),
        ("0000:99:00.0", 1, "address", "not_found", "no such PCI function"),
        ("41:00.9", 1, "address", "format", "41:00.9"),
    ],
)
def test_refusals_name_pf_field_and_rule(
    novfs_root: Path,
    kernel: RecordingKernel,
    pf: str,
    count: int,
    field: str,
    rule: str,
    text: str,
) -> None:
    with pytest.raises(SriovConfigError) as caught:
        configurator(novfs_root, kernel).set_num_vfs(pf, count)
    assert (caught.value.fields["field"], caught.value.fields["rule"]) == (field, rule)
    assert text in str(caught.value)
    assert pf.split(":", 1)[-1] in str(caught.value)
    assert kernel.writes == []


@pytest.mark.parametrize("count", [2, 8])
def test_refuses_change_while_a_vf_is_allocated(
    novfs_root: Path, kernel: RecordingKernel, count: int
) -> None:
    config = configurator(novfs_root, kernel)
    config.set_num_vfs(PF, 6)
    kernel.writes.clear()
    allocated = {PciAddress.parse("0000:41:00.5"), PciAddress.parse("0000:21:00.1")}
    with pytest.raises(SriovConfigError) as caught:
        config.set_num_vfs(PF, count, allocated=allocated)
    assert caught.value.fields["rule"] == "vfs_allocated"
    assert caught.value.fields["pf"] == PF
    assert "0000:41:00.5" in str(caught.value) and "0000:21:00.1" not in str(caught.value)
    assert ("decrease" in str(caught.value)) == (count < 6)
    assert kernel.writes == []
    # VFs of another PF being allocated do not block this one
    assert config.set_num_vfs(PF, 0, allocated={PciAddress.parse("0000:21:00.1")}).vfs == ()


def test_delayed_vfs_are_waited_for(novfs_root: Path) -> None:
    with FakeKernel(novfs_root, vf_delay=0.2) as fake:
        result = configurator(novfs_root, fake, settle_timeout=10).set_num_vfs(PF, 4)
    assert len(result.vfs) == 4


def test_bounded_wait_times_out(novfs_root: Path) -> None:
    with FakeKernel(novfs_root, vf_delay=30) as fake:
        config = configurator(novfs_root, fake, settle_timeout=0.3)
        with pytest.raises(SriovConfigError) as caught:
            config.set_num_vfs(PF, 4)
        assert caught.value.fields["rule"] == "vfs_timeout"
        assert "0 of 4 virtfn links after 0.3 s" in str(caught.value)


def test_blocked_write_times_out(novfs_root: Path) -> None:
    writer = BlockedWriter()
    config = configurator(novfs_root, writer, write_timeout=0.2)
    try:
        with pytest.raises(SriovConfigError) as caught:
            config.set_num_vfs(PF, 4)
        assert caught.value.fields["rule"] == "write_timeout"
        assert caught.value.fields["field"] == "sriov_numvfs"
    finally:
        writer.release.set()


def test_kernel_refusal_is_reported(novfs_root: Path, kernel: RecordingKernel) -> None:
    # the kernel will not configure SR-IOV on a PF without a driver (ENOENT)
    (SysfsReader(novfs_root).root / "sys/bus/pci/devices" / PF / "driver").unlink()
    with pytest.raises(SriovConfigError) as caught:
        configurator(novfs_root, kernel).set_num_vfs(PF, 2)
    assert caught.value.fields["rule"] == "write_failed"
    assert "driver" in str(caught.value)
