"""The libvirt driver on libvirt's test driver: what it cannot do maps to clear typed errors."""

from __future__ import annotations

import pytest
from hypervisor_kit import domain_xml, hostdev, libvirt_or_skip, unique_name

from pcifleet.domain.errors import (
    DeviceAlreadyAttached,
    DeviceNotAttached,
    DomainExists,
    DomainNotFound,
    DomainStateError,
    DomainXmlRejected,
    HypervisorError,
    HypervisorUnavailable,
    HypervisorUnsupported,
)
from pcifleet.host.hypervisor import DEFAULT_URI, HypervisorDriver, LibvirtDriver, Operation
from pcifleet.host.hypervisor.libvirt_driver import map_error


def test_the_default_uri_is_the_system_qemu() -> None:
    assert LibvirtDriver().uri == DEFAULT_URI == "qemu:///system"


def test_the_libvirt_driver_is_a_driver(libvirt_driver: LibvirtDriver) -> None:
    assert isinstance(libvirt_driver, HypervisorDriver)


@pytest.mark.parametrize("operation", ["attach", "detach"])
def test_hot_plug_on_the_test_driver_is_unsupported(
    libvirt_driver: LibvirtDriver, operation: str
) -> None:
    name = unique_name()
    libvirt_driver.define(domain_xml(name))
    libvirt_driver.start(name)
    call = libvirt_driver.attach_device if operation == "attach" else libvirt_driver.detach_device
    with pytest.raises(HypervisorUnsupported) as caught:
        call(name, hostdev())
    error = caught.value
    assert error.status == 501 and error.fields["domain"] == name
    assert str(error).startswith(f"domain {name}, {operation}-device: ")
    assert "not supported by the connection driver" in str(error)


def test_migration_on_the_test_driver_is_unsupported(libvirt_driver: LibvirtDriver) -> None:
    name = unique_name()
    libvirt_driver.define(domain_xml(name))
    libvirt_driver.start(name)
    with pytest.raises(HypervisorUnsupported, match=f"domain {name}, migrate: .*migration"):
        libvirt_driver.migrate(name, "test:///default")


def test_an_unreachable_hypervisor() -> None:
    libvirt_or_skip()
    driver = LibvirtDriver("qemu+unix:///system?socket=/nonexistent/libvirt-sock")
    with pytest.raises(HypervisorUnavailable) as caught:
        driver.list_domains()
    assert caught.value.fields["operation"] == "connect" and caught.value.status == 503


class FakeLibvirtError(Exception):
    """A stand-in for ``libvirt.libvirtError`` (its two accessors), for codes the test driver
    does not produce."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    def get_error_code(self) -> int:
        return self.code

    def get_error_message(self) -> str:
        return self.message


MAPPING = [
    (
        3,
        "this function is not supported by the connection driver",
        Operation.ATTACH,
        HypervisorUnsupported,
    ),
    (84, "Operation not supported", Operation.MIGRATE, HypervisorUnsupported),
    (42, "Domain not found", Operation.START, DomainNotFound),
    (99, "device not found: hostdev", Operation.DETACH, DeviceNotAttached),
    (
        55,
        "PCI device 0000:81:10.2 is in use by driver QEMU",
        Operation.ATTACH,
        DeviceAlreadyAttached,
    ),
    (55, "cannot do live update a device on inactive domain", Operation.ATTACH, DomainStateError),
    (55, "domain is not running", Operation.STOP, DomainStateError),
    (9, "operation failed: domain 'a' already exists with uuid x", Operation.DEFINE, DomainExists),
    (9, "operation failed: migration job: unexpectedly failed", Operation.MIGRATE, HypervisorError),
    (27, "XML error: name a/b cannot contain '/'", Operation.DEFINE, DomainXmlRejected),
    (38, "Failed to connect socket", Operation.CONNECT, HypervisorUnavailable),
    (1, "internal error: something", Operation.START, HypervisorError),
]


@pytest.mark.parametrize(("code", "message", "operation", "expected"), MAPPING)
def test_libvirt_codes_map_to_typed_errors(
    code: int, message: str, operation: Operation, expected: type[HypervisorError]
) -> None:
    error = map_error(FakeLibvirtError(code, message), "vm", operation)
    assert type(error) is expected
    assert str(error) == f"domain vm, {operation.value}: {message}"
    assert error.fields["libvirt_code"] == code
