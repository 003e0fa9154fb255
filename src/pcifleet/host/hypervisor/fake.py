"""An in-memory hypervisor that behaves like libvirt where the agent can tell the difference.

It keeps defined and running domains, the devices of each domain's saved config and of its
running instance (parsed from the XML with lxml and identified the way libvirt matches them on
detach: a PCI function by its source address, a NIC by its MAC, macvtap/vDPA/vhost-user by
their source), and raises the errors the libvirt driver raises: unknown domain, a second
domain with the name or UUID of another, start of a running domain, a device plugged twice, a
live change to a shut-off domain. A shared contract test runs the same scenarios against
libvirt's ``test:///default`` driver to keep the two honest.

It also records every call (:attr:`FakeHypervisor.calls`, failed ones too) and can be told to
fail an operation (:meth:`FakeHypervisor.fail`), so the agent's rollback paths are testable.
Fakes given each other as ``peers`` (by URI) migrate domains between them.
"""

from __future__ import annotations

import uuid as uuid_mod
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from lxml import etree

from pcifleet.domain.errors import (
    DeviceAlreadyAttached,
    DeviceNotAttached,
    DomainExists,
    DomainNotFound,
    DomainStateError,
    DomainXmlRejected,
    HypervisorError,
    HypervisorUnavailable,
)
from pcifleet.host.hypervisor.driver import DomainInfo, DomainState, MigrateOptions, Operation

Element = etree._Element
_PARSER: Final = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)
#: device elements the fake tracks (what pcifleet renders and hot plugs)
_DEVICE_TAGS: Final = frozenset({"hostdev", "interface"})


@dataclass(frozen=True, slots=True)
class Call:
    """One call made to the fake: the operation, the domain and the XML or URI it got."""

    operation: Operation
    domain: str
    argument: str | None = None
    live: bool | None = None
    config: bool | None = None


@dataclass(frozen=True, slots=True)
class AttachedDevice:
    """A device of a domain: its element name, how libvirt identifies it, and its XML."""

    tag: str
    #: ("pci", "0000:81:10.2"), ("mac", "fa:16:3e:00:00:01"), ("netdev", ...), ...
    keys: frozenset[tuple[str, str]]
    xml: str

    def clashes_with(self, other: AttachedDevice) -> tuple[str, str] | None:
        """The identity the two devices share (a PCI function, a MAC), if any."""
        shared = sorted(self.keys & other.keys)
        return shared[0] if shared else None


@dataclass(slots=True)
class _Domain:
    name: str
    uuid: str
    xml: str
    config: list[AttachedDevice]
    live: list[AttachedDevice] = field(default_factory=list)
    running: bool = False
    persistent: bool = True

    def info(self) -> DomainInfo:
        state = DomainState.RUNNING if self.running else DomainState.SHUT_OFF
        return DomainInfo(self.name, self.uuid, state, self.persistent)


def _reject(domain: str, operation: Operation, detail: str) -> DomainXmlRejected:
    return DomainXmlRejected(f"XML error: {detail}", domain=domain, operation=operation.value)


def _parse(text: str, domain: str, operation: Operation) -> Element:
    try:
        return etree.fromstring(text.encode(), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise _reject(domain, operation, f"not well-formed: {exc}") from exc


def _pci(address: Element) -> str:
    """``<address domain='0x0000' bus='0x81' slot='0x10' function='0x2'/>`` -> 0000:81:10.2."""
    part = {k: int(address.get(k, "0"), 0) for k in ("domain", "bus", "slot", "function")}
    return f"{part['domain']:04x}:{part['bus']:02x}:{part['slot']:02x}.{part['function']:x}"


def _source_keys(element: Element) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    source = element.find("source")
    if source is None:
        return keys
    address = source.find("address")
    if address is not None:
        keys.add(("pci", _pci(address)))
    kind = element.get("type", "")
    for attr in ("dev", "path"):
        value = source.get(attr)
        if value is not None:
            keys.add((f"{kind}-{attr}", value))
    return keys


def device_of(element: Element) -> AttachedDevice:
    """How libvirt would identify the device (falls back to its canonical XML)."""
    keys = _source_keys(element)
    mac = element.find("mac")
    if element.tag == "interface" and mac is not None and mac.get("address"):
        keys.add(("mac", str(mac.get("address")).lower()))
    xml = etree.tostring(element, method="c14n").decode()
    if not keys:
        keys.add(("xml", xml))
    return AttachedDevice(str(element.tag), frozenset(keys), xml)


def _devices_of(root: Element, name: str) -> list[AttachedDevice]:
    found: list[AttachedDevice] = []
    for element in root.iterfind("devices/*"):
        if element.tag not in _DEVICE_TAGS:
            continue
        device = device_of(element)
        for other in found:
            if (key := device.clashes_with(other)) is not None:
                raise _reject(name, Operation.DEFINE, f"device {key[0]} {key[1]} is used twice")
        found.append(device)
    return found


def _identity(root: Element) -> tuple[str, str | None]:
    if root.tag != "domain":
        raise _reject("?", Operation.DEFINE, f"expected <domain>, got <{root.tag}>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise _reject("?", Operation.DEFINE, "a domain needs a <name>")
    if "/" in name:
        raise _reject(name, Operation.DEFINE, f"name {name} cannot contain '/'")
    text = root.findtext("uuid")
    return name, str(uuid_mod.UUID(text.strip())) if text else None


class FakeHypervisor:
    """:class:`~pcifleet.host.hypervisor.driver.HypervisorDriver` in memory."""

    def __init__(self, uri: str = "fake:///", peers: Mapping[str, FakeHypervisor] | None = None):
        self.uri = uri
        #: other fakes reachable by URI (migration destinations); may be filled in later
        self.peers: dict[str, FakeHypervisor] = dict(peers or {})
        self.calls: list[Call] = []
        self._domains: dict[str, _Domain] = {}
        self._failures: defaultdict[Operation, deque[HypervisorError | None]] = defaultdict(deque)

    # -- test controls --------------------------------------------------------------------

    def fail(
        self, operation: Operation, error: HypervisorError | None = None, *, times: int = 1
    ) -> None:
        """Make the next ``times`` calls of ``operation`` fail before changing anything."""
        self._failures[operation].extend([error] * times)

    def operations(self) -> list[Operation]:
        return [c.operation for c in self.calls]

    def devices(self, name: str, *, live: bool = True) -> tuple[AttachedDevice, ...]:
        """The devices of the running domain (``live``) or of its saved config."""
        domain = self._get(name, Operation.STATE)
        return tuple(domain.live if live else domain.config)

    def xml(self, name: str) -> str:
        """The domain XML last defined (or received by migration)."""
        return self._get(name, Operation.STATE).xml

    # -- plumbing -------------------------------------------------------------------------

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        queue = self._failures.get(call.operation)
        if queue:
            error = queue.popleft()
            raise error or HypervisorError(
                "injected failure", domain=call.domain, operation=call.operation.value
            )

    def _get(self, name: str, operation: Operation) -> _Domain:
        domain = self._domains.get(name)
        if domain is None:
            raise DomainNotFound(
                f"Domain not found: no domain with matching name '{name}'",
                domain=name,
                operation=operation.value,
            )
        return domain

    # -- lifecycle ------------------------------------------------------------------------

    def define(self, xml: str) -> str:
        root = _parse(xml, "?", Operation.DEFINE)
        name, uuid = _identity(root)
        self._record(Call(Operation.DEFINE, name, xml))
        devices = _devices_of(root, name)
        existing = self._check_unique(name, uuid)
        if existing is not None:
            existing.xml, existing.config, existing.persistent = xml, devices, True
            return name
        self._domains[name] = _Domain(name, uuid or str(uuid_mod.uuid4()), xml, devices)
        return name

    def _check_unique(self, name: str, uuid: str | None) -> _Domain | None:
        """The domain a define updates (same name and UUID), or None for a new one."""
        same_name = self._domains.get(name)
        if same_name is not None and uuid in (None, same_name.uuid):
            if uuid is None:
                raise DomainExists(
                    f"operation failed: domain '{name}' already exists with uuid {same_name.uuid}",
                    domain=name,
                    operation=Operation.DEFINE.value,
                )
            return same_name
        for other in self._domains.values():
            if other.uuid == uuid or other.name == name:
                raise DomainExists(
                    f"operation failed: domain '{other.name}' is already defined with uuid "
                    f"{other.uuid}",
                    domain=name,
                    operation=Operation.DEFINE.value,
                )
        return None

    def start(self, name: str) -> None:
        self._record(Call(Operation.START, name))
        domain = self._get(name, Operation.START)
        _require_running(domain, Operation.START, running=False)
        domain.running, domain.live = True, list(domain.config)

    def stop(self, name: str) -> None:
        self._record(Call(Operation.STOP, name))
        domain = self._get(name, Operation.STOP)
        _require_running(domain, Operation.STOP, running=True)
        domain.running, domain.live = False, []
        if not domain.persistent:
            del self._domains[name]

    def undefine(self, name: str) -> None:
        self._record(Call(Operation.UNDEFINE, name))
        domain = self._get(name, Operation.UNDEFINE)
        if domain.running:
            domain.persistent, domain.config = False, []
        else:
            del self._domains[name]

    # -- devices --------------------------------------------------------------------------

    def _targets(
        self, name: str, operation: Operation, live: bool, config: bool
    ) -> list[list[AttachedDevice]]:
        domain = self._get(name, operation)
        if not live and not config:  # libvirt's AFFECT_CURRENT
            live, config = domain.running, not domain.running
        if live and not domain.running:
            raise DomainStateError(
                "Requested operation is not valid: cannot do live update a device on inactive "
                "domain",
                domain=name,
                operation=operation.value,
            )
        if config and not domain.persistent:
            raise DomainStateError(
                "Requested operation is not valid: cannot modify device on transient domain",
                domain=name,
                operation=operation.value,
            )
        return [lst for lst, on in ((domain.live, live), (domain.config, config)) if on]

    def _fragment(self, name: str, operation: Operation, fragment_xml: str) -> AttachedDevice:
        element = _parse(fragment_xml, name, operation)
        if element.tag not in _DEVICE_TAGS:
            raise _reject(name, operation, f"unsupported device type <{element.tag}>")
        return device_of(element)

    def attach_device(
        self, name: str, fragment_xml: str, *, live: bool = True, config: bool = True
    ) -> None:
        self._record(Call(Operation.ATTACH, name, fragment_xml, live, config))
        targets = self._targets(name, Operation.ATTACH, live, config)
        device = self._fragment(name, Operation.ATTACH, fragment_xml)
        for devices in targets:
            for other in devices:
                if (key := device.clashes_with(other)) is not None:
                    raise DeviceAlreadyAttached(
                        f"Requested operation is not valid: {key[0]} {key[1]} is already in use "
                        f"by domain {name}",
                        domain=name,
                        operation=Operation.ATTACH.value,
                    )
        for devices in targets:
            devices.append(device)

    def detach_device(
        self, name: str, fragment_xml: str, *, live: bool = True, config: bool = True
    ) -> None:
        self._record(Call(Operation.DETACH, name, fragment_xml, live, config))
        targets = self._targets(name, Operation.DETACH, live, config)
        device = self._fragment(name, Operation.DETACH, fragment_xml)
        found = [_matching(devices, device) for devices in targets]
        if any(index is None for index in found):
            raise DeviceNotAttached(
                f"device not found: {', '.join(f'{k} {v}' for k, v in sorted(device.keys))}",
                domain=name,
                operation=Operation.DETACH.value,
            )
        for devices, index in zip(targets, found, strict=True):
            if index is not None:
                del devices[index]

    # -- migration ------------------------------------------------------------------------

    def migrate(self, name: str, dest_uri: str, options: MigrateOptions | None = None) -> None:
        opts = options or MigrateOptions()
        self._record(Call(Operation.MIGRATE, name, dest_uri))
        domain = self._get(name, Operation.MIGRATE)
        _require_running(domain, Operation.MIGRATE, running=True)
        dest = self.peers.get(dest_uri)
        if dest is None:
            raise HypervisorUnavailable(
                f"unable to connect to {dest_uri}", domain=name, operation=Operation.MIGRATE.value
            )
        dest.receive(domain.info(), opts.dest_xml or domain.xml, persist=opts.persist)
        del self._domains[name]

    def receive(self, info: DomainInfo, xml: str, *, persist: bool) -> None:
        """The destination side of :meth:`migrate`: the domain arrives running. Recorded as a
        ``define`` on the destination (libvirt defines the incoming domain there), so a test
        can make the destination refuse it with ``fail(Operation.DEFINE)``."""
        self._record(Call(Operation.DEFINE, info.name, xml))
        root = _parse(xml, info.name, Operation.MIGRATE)
        name, uuid = _identity(root)
        if name in self._domains:
            raise DomainExists(
                f"domain '{name}' already exists on {self.uri}",
                domain=name,
                operation=Operation.MIGRATE.value,
            )
        devices = _devices_of(root, name)
        self._domains[name] = _Domain(
            name, uuid or info.uuid, xml, devices if persist else [], list(devices), True, persist
        )

    # -- queries --------------------------------------------------------------------------

    def state(self, name: str) -> DomainState:
        self._record(Call(Operation.STATE, name))
        return self._get(name, Operation.STATE).info().state

    def info(self, name: str) -> DomainInfo:
        self._record(Call(Operation.STATE, name))
        return self._get(name, Operation.STATE).info()

    def list_domains(self) -> tuple[DomainInfo, ...]:
        self._record(Call(Operation.LIST, "*"))
        return tuple(self._domains[n].info() for n in sorted(self._domains))


def _require_running(domain: _Domain, operation: Operation, *, running: bool) -> None:
    if domain.running != running:
        now = "running" if domain.running else "not running"
        raise DomainStateError(f"domain is {now}", domain=domain.name, operation=operation.value)


def _matching(devices: Iterable[AttachedDevice], device: AttachedDevice) -> int | None:
    for index, other in enumerate(devices):
        if device.clashes_with(other) is not None:
            return index
    return None
