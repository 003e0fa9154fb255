"""Fixtures for the end-to-end tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_kit import scratch_dir


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A scratch directory for one test (on tmpfs when writable), removed afterwards."""
    path = scratch_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
