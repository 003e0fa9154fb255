"""Helpers of the hypervisor tests (a module of its own: test modules import it)."""

from __future__ import annotations

import importlib
import itertools
from uuid import UUID, uuid5

import pytest

from pcifleet.domain.address import PciAddress
from pcifleet.domain.vnic import VnicType
from pcifleet.host.hypervisor import HypervisorDriver
from pcifleet.host.libvirt import (
    DomainSpec,
    GuestDevice,
    GuestPort,
    render_device,
    render_domain,
    to_string,
)

_NAMESPACE = UUID("0f6f4f5e-8d2b-4d8c-9f53-2c1b8a7e6d40")
_counter = itertools.count()
GPU = PciAddress.parse("0000:3b:00.0")
VF = PciAddress.parse("0000:81:10.2")


def libvirt_or_skip() -> None:
    """Skip the test when libvirt-python is missing (the libvirt driver needs it)."""
    try:
        module = importlib.import_module("libvirt")
    except ImportError as exc:
        pytest.skip(f"libvirt-python cannot be imported ({exc}); scripts/setup.sh installs it")
    if not hasattr(module, "open"):
        pytest.skip("libvirt-python is not installed; scripts/setup.sh installs it")


def unique_name(prefix: str = "pcif") -> str:
    return f"{prefix}-{next(_counter)}"


def domain_xml(
    name: str, *, uuid: UUID | None = None, devices: tuple[GuestDevice, ...] = ()
) -> str:
    """A small rendered domain (pcifleet's renderer, so the drivers see real output)."""
    spec = DomainSpec(name, uuid or uuid5(_NAMESPACE, name), 1, 512, devices=devices)
    return to_string(render_domain(spec))


def hostdev(address: PciAddress = GPU) -> str:
    return to_string(render_device(GuestDevice(address)))


def vf_port(mac: str = "fa:16:3e:00:00:01", address: PciAddress = VF) -> str:
    return to_string(render_device(GuestPort(VnicType.DIRECT, mac=mac, address=address)))


def cleanup(driver: HypervisorDriver, keep: set[str]) -> None:
    """Stop and undefine every domain a test made (libvirt's test driver keeps them)."""
    for info in driver.list_domains():
        if info.name in keep:
            continue
        if info.state.active:
            driver.stop(info.name)
        if info.persistent:
            driver.undefine(info.name)
