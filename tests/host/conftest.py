"""Fixtures for host tests: private copies of the real-kernel sysfs captures.

The captures live in ``../shared/sysfs-captures`` (Debian 12 kernel in QEMU q35 with NUMA
nodes and SR-IOV NVMe controllers); ``PCIFLEET_SYSFS_CAPTURES`` points elsewhere if needed.
A test that changes a tree works on a copy (``sriov_copy``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

#: the SR-IOV capture (unpacked once by the top-level conftest as ``sriov_capture``)
SRIOV = "q35-numa-nvme-sriov"


#: device children discovery never reads (runtime PM, MSI, nvme/ata/i2c class devices,
#: netdev statistics): left out of the per-test copies, which are ~4x smaller without them
_NOT_READ = frozenset(
    {"power", "msi_irqs", "nvme", "statistics", "queues", "pci_bus", "i2c-0", "iTCO_wdt.1.auto"}
)


def _skip_unread(directory: str, names: list[str]) -> set[str]:
    if "/sys/devices/" not in directory + "/":
        return {"meta"} & set(names)
    return {n for n in names if n in _NOT_READ or n.startswith(("ata", "LNXSYSTM"))}


CopyTree = Callable[[Path, Path], Path]


@pytest.fixture(scope="session")
def copy_tree() -> CopyTree:
    """``copy_tree(capture, target)``: a private copy of a capture that a test may damage."""

    def copy(source: Path, target: Path) -> Path:
        shutil.copytree(source, target, symlinks=True, ignore=_skip_unread)
        return target

    return copy


@pytest.fixture
def sriov_copy(sriov_capture: Path, tmp_path: Path) -> Path:
    """A private copy of the SR-IOV capture that a test may damage (attributes and links
    discovery reads are all there; runtime-PM and class-device children are left out)."""
    target = tmp_path / SRIOV
    shutil.copytree(sriov_capture, target, symlinks=True, ignore=_skip_unread)
    return target
