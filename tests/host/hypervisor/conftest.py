"""Drivers for the hypervisor tests: the fake, and the libvirt driver on libvirt's test driver.

``test:///default`` keeps its state per process for as long as a connection is open and comes
with a running domain called ``test``; every test therefore uses its own domain names and
removes what it made.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypervisor_kit import cleanup, libvirt_or_skip

from pcifleet.host.hypervisor import FakeHypervisor, HypervisorDriver, LibvirtDriver


@pytest.fixture
def libvirt_driver() -> Iterator[LibvirtDriver]:
    libvirt_or_skip()
    driver = LibvirtDriver("test:///default")
    names = {d.name for d in driver.list_domains()}
    try:
        yield driver
    finally:
        cleanup(driver, keep=names)
        driver.close()


@pytest.fixture
def fake() -> FakeHypervisor:
    return FakeHypervisor()


@pytest.fixture(params=["fake", "libvirt-test"])
def driver(request: pytest.FixtureRequest) -> HypervisorDriver:
    """Each contract test runs once per implementation."""
    name = "fake" if request.param == "fake" else "libvirt_driver"
    found: HypervisorDriver = request.getfixturevalue(name)
    return found
