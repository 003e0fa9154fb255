"""The hypervisor as the agent sees it: a small protocol over libvirt's domain lifecycle.

The agent only needs define, start, stop, undefine, hot plug and migration, so the protocol
has exactly those; :mod:`.libvirt_driver` implements it over ``libvirt-python`` and
:mod:`.fake` in memory for the agent tests and the demo. Both raise the same typed errors
(:class:`~pcifleet.domain.errors.HypervisorError` subclasses naming the domain, the operation
and the hypervisor's own message), which a contract test checks against libvirt's test driver.

Domains are addressed by name: pcifleet names a domain after its instance, and libvirt
refuses two domains with one name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class Operation(enum.StrEnum):
    """What was being done when a call failed (the ``operation`` of every error)."""

    CONNECT = "connect"
    DEFINE = "define"
    START = "start"
    STOP = "stop"
    UNDEFINE = "undefine"
    ATTACH = "attach-device"
    DETACH = "detach-device"
    MIGRATE = "migrate"
    STATE = "state"
    LIST = "list"


class DomainState(enum.StrEnum):
    """libvirt's ``virDomainState`` reduced to what the agent acts on."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUT_OFF = "shut-off"
    SHUTTING_DOWN = "shutting-down"
    CRASHED = "crashed"
    SUSPENDED = "suspended"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"

    @property
    def active(self) -> bool:
        """True when the domain has a running QEMU process (hot plug applies live)."""
        return self not in (DomainState.SHUT_OFF, DomainState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class DomainInfo:
    name: str
    uuid: str
    state: DomainState
    #: False for a transient domain (undefined while running: it vanishes when stopped)
    persistent: bool


@dataclass(frozen=True, slots=True)
class MigrateOptions:
    """How a migration runs (libvirt's ``VIR_MIGRATE_*`` flags the agent uses)."""

    live: bool = True
    #: keep the domain defined on the destination and undefine it on the source
    persist: bool = True
    #: the domain XML to start on the destination (rewritten device sources); None: same XML
    dest_xml: str | None = None
    #: bandwidth cap in MiB/s; None: libvirt's default
    bandwidth_mib: int | None = None


@runtime_checkable
class HypervisorDriver(Protocol):
    """Lifecycle and hot plug of domains on one hypervisor connection."""

    def define(self, xml: str) -> str:
        """Define (or redefine, same name and UUID) a persistent domain; returns its name."""
        ...

    def start(self, name: str) -> None:
        """Start a defined, shut-off domain."""
        ...

    def stop(self, name: str) -> None:
        """Power a running domain off at once (a transient domain then disappears)."""
        ...

    def undefine(self, name: str) -> None:
        """Remove the definition; a running domain keeps running as a transient one."""
        ...

    def attach_device(
        self, name: str, fragment_xml: str, *, live: bool = True, config: bool = True
    ) -> None:
        """Hot plug a device fragment into the running domain and/or its saved config."""
        ...

    def detach_device(
        self, name: str, fragment_xml: str, *, live: bool = True, config: bool = True
    ) -> None:
        """Unplug the device the fragment names (by PCI address or MAC)."""
        ...

    def migrate(self, name: str, dest_uri: str, options: MigrateOptions | None = None) -> None:
        """Move a running domain to ``dest_uri`` (default options: live, persistent)."""
        ...

    def state(self, name: str) -> DomainState: ...

    def xml(self, name: str) -> str:
        """The domain's XML as the hypervisor keeps it (with pcifleet's ``<metadata>``), so
        a restarted agent can tell what it plugged."""
        ...

    def info(self, name: str) -> DomainInfo: ...

    def list_domains(self) -> tuple[DomainInfo, ...]:
        """Every domain, defined or running, sorted by name."""
        ...
