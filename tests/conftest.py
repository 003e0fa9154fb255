"""Fixtures shared by every test folder: the real-kernel sysfs captures, unpacked once.

The captures live in ``../shared/sysfs-captures`` beside the repository (Debian 12's kernel in
QEMU q35 with NUMA nodes and SR-IOV NVMe controllers); ``PCIFLEET_SYSFS_CAPTURES`` points
elsewhere. A test that changes a tree must work on a copy.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

CAPTURES = Path(
    os.environ.get(
        "PCIFLEET_SYSFS_CAPTURES",
        str(Path(__file__).resolve().parents[2] / "shared" / "sysfs-captures"),
    )
)
SRIOV = "q35-numa-nvme-sriov"
NOVFS = "q35-numa-nvme-sriov-novfs"


def _unpack(name: str, into: Path) -> Path:
    archive = CAPTURES / f"{name}.tar.gz"
    if not archive.is_file():
        pytest.skip(f"sysfs capture {archive} is not available")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="tar")
    return into / name


@pytest.fixture(scope="session")
def sriov_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root (holding ``sys/``) of the capture with SR-IOV enabled: 2 PFs with 4 and 8 VFs."""
    return _unpack(SRIOV, tmp_path_factory.mktemp("capture-sriov"))


@pytest.fixture(scope="session")
def novfs_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the same machine's capture with ``sriov_numvfs=0`` on both PFs."""
    return _unpack(NOVFS, tmp_path_factory.mktemp("capture-novfs"))
