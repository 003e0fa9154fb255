"""Fixtures for the simulator tests: real-kernel captures and fast scratch roots.

The captures live in ``../shared/sysfs-captures`` (``PCIFLEET_SYSFS_CAPTURES`` points
elsewhere). Trees are built under ``/dev/shm`` when it is writable: creating files there costs
~15 us instead of up to 1 ms on a busy disk, and a tree has thousands of them.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CAPTURES = Path(
    os.environ.get(
        "PCIFLEET_SYSFS_CAPTURES",
        str(Path(__file__).resolve().parents[3] / "shared" / "sysfs-captures"),
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
    """Root (holding ``sys/``) of the capture with 4 + 8 VFs enabled."""
    return _unpack(SRIOV, tmp_path_factory.mktemp("sim-capture-sriov"))


@pytest.fixture(scope="session")
def novfs_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the same machine's capture with ``sriov_numvfs=0`` on both PFs."""
    return _unpack(NOVFS, tmp_path_factory.mktemp("sim-capture-novfs"))


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """An empty directory for one tree, on tmpfs when available."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = Path(tempfile.mkdtemp(prefix="pcifleet-sim-", dir=shm))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path
