"""Fixtures for the simulator tests: real-kernel captures and fast scratch roots.

The captures are unpacked once by ``tests/conftest.py`` (``PCIFLEET_SYSFS_CAPTURES`` points
elsewhere). Trees are built under ``/dev/shm`` when it is writable: creating files there costs
~15 us instead of up to 1 ms on a busy disk, and a tree has thousands of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
