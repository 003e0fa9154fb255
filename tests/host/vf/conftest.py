"""A throwaway network namespace for the real-netlink tests (skipped where one cannot be made)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from pyroute2 import netns


@pytest.fixture
def netns_name() -> Iterator[str]:
    """A fresh named namespace (``/run/netns/<name>``), always removed afterwards."""
    name = f"pcf-vf-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        netns.create(name)
    except Exception as error:  # permission, no CONFIG_NET_NS, read-only /run, ...
        pytest.skip(f"cannot create a network namespace on this machine: {error!r}")
    try:
        yield name
    finally:
        netns.remove(name)
        assert name not in netns.listnetns()
