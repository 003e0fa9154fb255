"""Driving the hypervisor: the :class:`HypervisorDriver` protocol, its libvirt implementation
and an in-memory fake with the same behaviour and errors."""

from pcifleet.host.hypervisor.driver import (
    DomainInfo,
    DomainState,
    HypervisorDriver,
    MigrateOptions,
    Operation,
)
from pcifleet.host.hypervisor.fake import AttachedDevice, Call, FakeHypervisor
from pcifleet.host.hypervisor.libvirt_driver import DEFAULT_URI, LibvirtDriver

__all__ = [
    "DEFAULT_URI",
    "AttachedDevice",
    "Call",
    "DomainInfo",
    "DomainState",
    "FakeHypervisor",
    "HypervisorDriver",
    "LibvirtDriver",
    "MigrateOptions",
    "Operation",
]
