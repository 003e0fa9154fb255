"""The hypervisor driver over ``libvirt-python`` (``qemu:///system`` unless told otherwise).

``libvirt`` is imported when the first connection opens, so pcifleet imports without it (the
controller never needs it). Every ``libvirtError`` is mapped by libvirt's error code to one of
pcifleet's :class:`~pcifleet.domain.errors.HypervisorError` subclasses, keeping libvirt's own
message as the detail; the table is :data:`ERROR_CLASSES`, the few message-based refinements
(duplicate domain, device in use) are in :func:`_error_class`.

libvirt's ``start`` on a running domain is an internal error in the test driver and
"operation invalid" in QEMU's; the driver checks the state first so both read
:class:`~pcifleet.domain.errors.DomainStateError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MappingProxyType, ModuleType
from typing import Any, Final, TypeVar

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
from pcifleet.host.hypervisor.driver import DomainInfo, DomainState, MigrateOptions, Operation

DEFAULT_URI: Final = "qemu:///system"
_T = TypeVar("_T")

#: libvirt ``VIR_ERR_*`` codes (stable ABI numbers) -> pcifleet error class
ERROR_CLASSES: Final = MappingProxyType(
    {
        3: HypervisorUnsupported,  # NO_SUPPORT: "not supported by the connection driver"
        74: HypervisorUnsupported,  # ARGUMENT_UNSUPPORTED
        84: HypervisorUnsupported,  # OPERATION_UNSUPPORTED
        67: DomainXmlRejected,  # CONFIG_UNSUPPORTED
        27: DomainXmlRejected,  # XML_ERROR
        35: DomainXmlRejected,  # XML_DETAIL (not well-formed)
        8: DomainXmlRejected,  # INVALID_ARG
        42: DomainNotFound,  # NO_DOMAIN
        99: DeviceNotAttached,  # DEVICE_MISSING
        55: DomainStateError,  # OPERATION_INVALID
        28: DomainExists,  # DOM_EXIST
        38: HypervisorUnavailable,  # SYSTEM_ERROR (socket, certificates)
        5: HypervisorUnavailable,  # NO_CONNECT
        1: HypervisorError,  # INTERNAL_ERROR
    }
)
_OPERATION_FAILED = 9
_OPERATION_INVALID = 55
_DUPLICATE_WORDS = ("already exists", "already defined")
_IN_USE_WORDS = ("in use", "already", "duplicate")

#: virDomainState numbers -> DomainState
_STATES: Final = MappingProxyType(
    {
        0: DomainState.UNKNOWN,
        1: DomainState.RUNNING,
        2: DomainState.BLOCKED,
        3: DomainState.PAUSED,
        4: DomainState.SHUTTING_DOWN,
        5: DomainState.SHUT_OFF,
        6: DomainState.CRASHED,
        7: DomainState.SUSPENDED,
    }
)


def _error_class(code: int, message: str, operation: Operation) -> type[HypervisorError]:
    text = message.lower()
    if code == _OPERATION_FAILED and any(w in text for w in _DUPLICATE_WORDS):
        return DomainExists
    attach = operation is Operation.ATTACH and code == _OPERATION_INVALID
    if attach and any(w in text for w in _IN_USE_WORDS):
        return DeviceAlreadyAttached
    return ERROR_CLASSES.get(code, HypervisorError)


def map_error(exc: Exception, domain: str, operation: Operation) -> HypervisorError:
    """The pcifleet error for a ``libvirtError`` (its code and message) of one call."""
    get_code = getattr(exc, "get_error_code", None)
    get_message = getattr(exc, "get_error_message", None)
    code = get_code() if callable(get_code) else None
    message = (get_message() if callable(get_message) else None) or str(exc)
    cls = _error_class(code if isinstance(code, int) else -1, str(message), operation)
    return cls(str(message), domain=domain, operation=operation.value, libvirt_code=code)


def _load_libvirt() -> ModuleType:
    try:
        module = importlib.import_module("libvirt")
    except ImportError as exc:
        raise HypervisorUnavailable(
            f"libvirt-python is not installed ({exc})", domain="-", operation="connect"
        ) from exc
    if not hasattr(module, "open"):
        raise HypervisorUnavailable(
            "the libvirt module found is not libvirt-python", domain="-", operation="connect"
        )
    return module


def _silence(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; the mapped exception says it all."""


class LibvirtDriver:
    """:class:`~pcifleet.host.hypervisor.driver.HypervisorDriver` over one libvirt connection.

    The connection opens on first use and is kept; :meth:`close` closes it.
    """

    def __init__(self, uri: str = DEFAULT_URI) -> None:
        self.uri = uri
        self._libvirt: ModuleType | None = None
        self._conn: Any = None

    # -- connection -----------------------------------------------------------------------

    def _module(self) -> ModuleType:
        if self._libvirt is None:
            self._libvirt = _load_libvirt()
            self._libvirt.registerErrorHandler(_silence, None)
        return self._libvirt

    def _connection(self) -> Any:
        if self._conn is None:
            libvirt = self._module()
            with self._mapped(self.uri, Operation.CONNECT):
                self._conn = libvirt.open(self.uri)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def __enter__(self) -> LibvirtDriver:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _mapped(self, domain: str, operation: Operation) -> Iterator[None]:
        try:
            yield
        except self._module().libvirtError as exc:
            raise map_error(exc, domain, operation) from exc

    def _call(self, name: str, operation: Operation, action: Callable[[Any], _T]) -> _T:
        """Look the domain up and run ``action`` on it, mapping libvirt's errors."""
        conn = self._connection()
        with self._mapped(name, operation):
            return action(conn.lookupByName(name))

    # -- lifecycle ------------------------------------------------------------------------

    def define(self, xml: str) -> str:
        conn = self._connection()
        with self._mapped(_name_hint(xml), Operation.DEFINE):
            return str(conn.defineXML(xml).name())

    def start(self, name: str) -> None:
        self._require_state(name, Operation.START, running=False)
        self._call(name, Operation.START, lambda dom: dom.create())

    def stop(self, name: str) -> None:
        self._require_state(name, Operation.STOP, running=True)
        self._call(name, Operation.STOP, lambda dom: dom.destroy())

    def undefine(self, name: str) -> None:
        self._call(name, Operation.UNDEFINE, lambda dom: dom.undefine())

    def _require_state(self, name: str, operation: Operation, *, running: bool) -> None:
        active = self._call(name, operation, _state_of).active
        if active != running:
            now = "running" if active else "not running"
            raise DomainStateError(f"domain is {now}", domain=name, operation=operation.value)

    # -- devices --------------------------------------------------------------------------

    def _device_flags(self, live: bool, config: bool) -> int:
        libvirt = self._module()
        flags = libvirt.VIR_DOMAIN_AFFECT_LIVE if live else 0
        return int(flags | (libvirt.VIR_DOMAIN_AFFECT_CONFIG if config else 0))

    def attach_device(
        self, name: str, fragment_xml: str, *, live: bool = True, config: bool = True
    ) -> None:
        flags = self._device_flags(live, config)
        self._call(name, Operation.ATTACH, lambda dom: dom.attachDeviceFlags(fragment_xml, flags))

    def detach_device(
        self, name: str, fragment_xml: str, *, live: bool = True, config: bool = True
    ) -> None:
        flags = self._device_flags(live, config)
        self._call(name, Operation.DETACH, lambda dom: dom.detachDeviceFlags(fragment_xml, flags))

    # -- migration ------------------------------------------------------------------------

    def _migrate_flags(self, options: MigrateOptions) -> int:
        libvirt = self._module()
        flags = libvirt.VIR_MIGRATE_PEER2PEER
        if options.live:
            flags |= libvirt.VIR_MIGRATE_LIVE
        if options.persist:
            flags |= libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        return int(flags)

    def _migrate_params(self, options: MigrateOptions) -> dict[str, object]:
        libvirt = self._module()
        params: dict[str, object] = {}
        if options.dest_xml is not None:
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = options.dest_xml
        if options.bandwidth_mib is not None:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = options.bandwidth_mib
        return params

    def migrate(self, name: str, dest_uri: str, options: MigrateOptions | None = None) -> None:
        opts = options or MigrateOptions()
        params, flags = self._migrate_params(opts), self._migrate_flags(opts)
        self._call(name, Operation.MIGRATE, lambda dom: dom.migrateToURI3(dest_uri, params, flags))

    # -- queries --------------------------------------------------------------------------

    def state(self, name: str) -> DomainState:
        return self._call(name, Operation.STATE, _state_of)

    def info(self, name: str) -> DomainInfo:
        return self._call(name, Operation.STATE, _info_of)

    def xml(self, name: str) -> str:
        return self._call(name, Operation.STATE, lambda dom: str(dom.XMLDesc(0)))

    def list_domains(self) -> tuple[DomainInfo, ...]:
        conn = self._connection()
        with self._mapped("*", Operation.LIST):
            found = [_info_of(dom) for dom in conn.listAllDomains()]
        return tuple(sorted(found, key=lambda d: d.name))


def _state_of(dom: Any) -> DomainState:
    return _STATES.get(int(dom.state()[0]), DomainState.UNKNOWN)


def _info_of(dom: Any) -> DomainInfo:
    return DomainInfo(
        name=str(dom.name()),
        uuid=str(dom.UUIDString()),
        state=_state_of(dom),
        persistent=bool(dom.isPersistent()),
    )


def _name_hint(xml: str) -> str:
    """The ``<name>`` of a domain XML for error messages (``?`` when it cannot be read)."""
    start, end = xml.find("<name>"), xml.find("</name>")
    if 0 <= start < end:
        return xml[start + len("<name>") : end].strip() or "?"
    return "?"
