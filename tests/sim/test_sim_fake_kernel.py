"""FakeKernel reacts to sysfs writes like Linux's sriov_numvfs_store (drivers/pci/iov.c)."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pytest

from pcifleet.host.sysfs import SysfsWriter
from pcifleet.sim.kernel import FakeKernel, parse_u16
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import BuiltHost, build_tree

PF = "0000:11:00.0"


@pytest.fixture
def host(scratch: Path) -> BuiltHost:
    """compute-x710: PF 0000:11:00.0 (i40e, 64 total) with 8 VFs, netdev ens1f0."""
    return build_tree(load_shipped("compute-x710"), scratch)


def _numvfs(host: BuiltHost, pf: str = PF) -> Path:
    return host.sys_root / "bus/pci/devices" / pf / "sriov_numvfs"


def _virtfns(pf_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(pf_dir) if n.startswith("virtfn"))


def _errno(kernel: FakeKernel, path: Path, value: str) -> int | None:
    try:
        kernel.write(path, value)
    except OSError as exc:
        return exc.errno
    return None


def test_fake_kernel_is_a_sysfs_writer(host: BuiltHost) -> None:
    writer: SysfsWriter = FakeKernel(host.root)
    writer.write(_numvfs(host), "0")
    assert _numvfs(host).read_text() == "0\n"


def test_zero_removes_every_vf_and_its_links(host: BuiltHost) -> None:
    kernel = FakeKernel(host.root)
    vfs = host.vfs_of(host.function(PF).address)
    kernel.write(_numvfs(host), "0")
    sys_root = host.sys_root
    pf_dir = sys_root / host.function(PF).path
    assert _virtfns(pf_dir) == []
    for vf in vfs:
        assert not (sys_root / "bus/pci/devices" / str(vf.address)).exists()
        assert not (sys_root / vf.path).exists()
        assert not (sys_root / "bus/pci/drivers/iavf" / str(vf.address)).exists()
    assert not (sys_root / "class/net/ens1f0v0").exists()
    assert (sys_root / "class/net/ens1f0").exists()
    dangling = [
        name
        for folder in ("bus/pci/devices", "class/net")
        for name in os.listdir(sys_root / folder)
        if not (sys_root / folder / name).exists()
    ]
    assert dangling == []


def test_vfs_appear_with_the_kernel_layout(host: BuiltHost) -> None:
    kernel = FakeKernel(host.root)
    kernel.write(_numvfs(host), "0")
    kernel.write(_numvfs(host), "20\n")
    pf_dir = host.sys_root / host.function(PF).path
    assert len(_virtfns(pf_dir)) == 20
    assert os.readlink(pf_dir / "virtfn19") == "../0000:11:04.3"
    vf = host.sys_root / "bus/pci/devices/0000:11:04.3"
    assert os.readlink(vf) == "../../../devices/pci0000:10/0000:10:00.0/0000:11:04.3"
    assert os.readlink(vf / "physfn") == "../0000:11:00.0"
    assert os.readlink(vf / "driver") == "../../../../bus/pci/drivers/iavf"
    assert os.readlink(vf / "iommu_group").startswith("../../../../kernel/iommu_groups/")
    assert (vf / "device").read_text() == "0x154c\n"
    assert (vf / "numa_node").read_text() == "0\n"
    assert (vf / "driver_override").read_text() == "(null)\n"
    assert (vf / "net/ens1f0v19/speed").read_text() == "10000\n"
    assert os.readlink(host.sys_root / "class/net/ens1f0v19").endswith("0000:11:04.3/net/ens1f0v19")
    assert _numvfs(host).read_text() == "20\n"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("4", errno.EBUSY),
        ("65", errno.ERANGE),
        ("abc", errno.EINVAL),
        ("-1", errno.EINVAL),
        ("70000", errno.EINVAL),
        ("", errno.EINVAL),
        ("8", None),
        ("0x8", None),
    ],
)
def test_numvfs_errors_follow_iov_c(host: BuiltHost, value: str, code: int | None) -> None:
    kernel = FakeKernel(host.root)
    assert _errno(kernel, _numvfs(host), value) == code
    assert _numvfs(host).read_text() == "8\n"
    assert len(_virtfns(host.sys_root / host.function(PF).path)) == 8


def test_pf_without_driver_cannot_configure_sriov(host: BuiltHost) -> None:
    kernel = FakeKernel(host.root)
    pf_dir = host.sys_root / host.function("0000:81:00.0").path
    (pf_dir / "driver").unlink()
    assert _errno(kernel, _numvfs(host, "0000:81:00.0"), "2") == errno.ENOENT
    assert _virtfns(pf_dir) == []


@pytest.mark.parametrize(
    ("relative", "code"),
    [
        ("bus/pci/devices/0000:11:00.0/vendor", errno.EACCES),
        ("bus/pci/devices/0000:11:00.0/sriov_totalvfs", errno.EACCES),
        ("bus/pci/drivers/iavf/unbind", errno.EOPNOTSUPP),
        ("bus/pci/devices/0000:11:00.0/no_such_attribute", errno.ENOENT),
        ("bus/pci/devices/0000:11:00.0", errno.EISDIR),
        ("../outside", errno.EACCES),
    ],
)
def test_other_writes_are_refused_like_sysfs(host: BuiltHost, relative: str, code: int) -> None:
    assert _errno(FakeKernel(host.root), host.sys_root / relative, "1") == code


def test_driver_override_is_stored_and_cleared(host: BuiltHost) -> None:
    kernel = FakeKernel(host.root)
    path = host.sys_root / "bus/pci/devices/0000:11:02.0/driver_override"
    kernel.write(path, "vfio-pci\n")
    assert path.read_text() == "vfio-pci\n"
    kernel.write(path, "\n")
    assert path.read_text() == "(null)\n"


def test_delayed_vfs_appear_later_or_on_settle(host: BuiltHost) -> None:
    # the delay is long enough that even a loaded machine checks "not yet" before it ends;
    # VFs then appear one by one, as the kernel creates them, so wait for all four
    with FakeKernel(host.root, vf_delay=1.5) as kernel:
        pf_dir = host.sys_root / host.function(PF).path
        kernel.write(_numvfs(host), "0")
        kernel.write(_numvfs(host), "4")
        assert _numvfs(host).read_text() == "4\n"
        assert _virtfns(pf_dir) == []
        deadline = time.monotonic() + 20
        while len(_virtfns(pf_dir)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_virtfns(pf_dir)) == 4
        kernel.write(_numvfs(host), "0")
        kernel.write(_numvfs(host), "2")
        kernel.settle()
        assert _virtfns(pf_dir) == ["virtfn0", "virtfn1"]


def test_zero_cancels_a_pending_creation(host: BuiltHost) -> None:
    with FakeKernel(host.root, vf_delay=30) as kernel:
        pf_dir = host.sys_root / host.function(PF).path
        kernel.write(_numvfs(host), "0")
        kernel.write(_numvfs(host), "4")
        kernel.write(_numvfs(host), "0")
        kernel.settle()
        assert _virtfns(pf_dir) == []
        assert _numvfs(host).read_text() == "0\n"


def test_nvme_vfs_on_a_real_capture_copy(
    novfs_capture: Path, sriov_capture: Path, scratch: Path
) -> None:
    """On a copy of the real no-VF capture, 8 VFs appear exactly as in the real VF capture."""
    root = scratch / "copy"
    shutil.copytree(novfs_capture, root, symlinks=True)
    kernel = FakeKernel(root)
    kernel.write(root / "sys/bus/pci/devices/0000:41:00.0/sriov_numvfs", "8")
    for sys_root in (root / "sys", sriov_capture / "sys"):
        pf = sys_root / "bus/pci/devices/0000:41:00.0"
        vf = sys_root / "bus/pci/devices/0000:41:01.0"
        assert os.readlink(pf / "virtfn7") == "../0000:41:01.0"
        assert os.readlink(vf) == "../../../devices/pci0000:40/0000:40:00.0/0000:41:01.0"
        assert os.readlink(vf / "physfn") == "../0000:41:00.0"
        assert (vf / "device").read_text() == "0x0010\n"
        assert (vf / "numa_node").read_text() == "1\n"
        assert (vf / "current_link_speed").read_text() == "2.5 GT/s PCIe\n"
    made = root / "sys/bus/pci/devices/0000:41:01.0"
    assert os.readlink(made / "driver") == "../../../../bus/pci/drivers/nvme"
    kernel.write(root / "sys/bus/pci/devices/0000:41:00.0/sriov_numvfs", "0")
    assert not made.exists()


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("12\n", 12), ("0x10", 16), ("010", 8), ("+3", 3), ("65535", 65535)],
)
def test_parse_u16_accepts_kstrtou16_forms(text: str, value: int) -> None:
    assert parse_u16(text) == value


@pytest.mark.parametrize("text", ["", "-1", "65536", "1.5", "08", " 1", "1\n\n", "0x"])
def test_parse_u16_rejects_the_rest(text: str) -> None:
    assert parse_u16(text) is None
