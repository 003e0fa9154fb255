"""The fake hypervisor with its domains kept in a JSON file, so they outlive the agent process.

:class:`~pcifleet.host.hypervisor.fake.FakeHypervisor` forgets everything when its process
ends, which is right for unit tests but not for a test that kills an agent with SIGKILL and
restarts it: on a real host the domains stay with libvirt while the agent is gone. This
subclass reads its domains from ``path`` when it starts and writes them back (atomically,
through a temporary file and ``os.replace``) after every call that changes them, so a killed
agent leaves a consistent file behind. ``pcifleet agent --hypervisor-uri fake:///PATH`` selects
it; ``fake://`` and ``fake:///`` stay in memory.

Another process may change the file too: a source agent migrating a guest here opens this
host's file as its destination peer and writes the arriving domain into it. So every call
re-reads the file first and holds an exclusive ``flock`` on ``PATH.lock`` from the read to
the write: a migration's domain leaves the source's file and appears in the destination's,
and neither agent overwrites the other's change with a stale copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from lxml import etree

from pcifleet.domain.errors import InvalidInput
from pcifleet.host.hypervisor.driver import DomainInfo, DomainState, MigrateOptions
from pcifleet.host.hypervisor.fake import (
    _PARSER,
    AttachedDevice,
    FakeHypervisor,
    _Domain,
    device_of,
)

#: the scheme of the fake hypervisor's URIs
FAKE_SCHEME: Final = "fake"


def fake_state_path(uri: str) -> Path | None:
    """The state file of ``fake:///PATH``; None for the in-memory ``fake://`` or ``fake:///``."""
    parts = urlsplit(uri)
    if parts.scheme != FAKE_SCHEME:
        raise InvalidInput(f"{uri!r} is not a fake:// URI", field="uri", rule="scheme")
    if parts.path in ("", "/"):
        return None
    if parts.netloc:
        raise InvalidInput(
            f"{uri!r}: a state file takes three slashes (fake:///PATH), no host",
            field="uri",
            rule="path",
        )
    return Path(parts.path)


def fake_hypervisor(uri: str) -> FakeHypervisor:
    """The fake a ``fake:`` URI names: file-backed with a path, in memory without one."""
    path = fake_state_path(uri)
    return FakeHypervisor(uri) if path is None else FileBackedFakeHypervisor(path, uri)


def _device(xml: str) -> AttachedDevice:
    return device_of(etree.fromstring(xml.encode(), _PARSER))


def _to_json(domain: _Domain) -> dict[str, object]:
    return {
        "name": domain.name,
        "uuid": domain.uuid,
        "xml": domain.xml,
        "config": [d.xml for d in domain.config],
        "live": [d.xml for d in domain.live],
        "running": domain.running,
        "persistent": domain.persistent,
    }


def _from_json(item: dict[str, object], path: Path) -> _Domain:
    try:
        return _Domain(
            name=str(item["name"]),
            uuid=str(item["uuid"]),
            xml=str(item["xml"]),
            config=[_device(str(x)) for x in _strings(item["config"], path, "config")],
            live=[_device(str(x)) for x in _strings(item["live"], path, "live")],
            running=bool(item["running"]),
            persistent=bool(item["persistent"]),
        )
    except (KeyError, etree.XMLSyntaxError) as exc:
        raise InvalidInput(
            f"{path}: a domain entry is malformed ({exc})", field="domains", rule="format"
        ) from None


def _strings(value: object, path: Path, field: str = "domains") -> list[object]:
    if not isinstance(value, list):
        raise InvalidInput(
            f"{path}: {field}: expected a list, got {type(value).__name__}",
            field=field,
            rule="format",
        )
    return value


def write_atomically(path: Path, data: object) -> None:
    """Replace ``path`` with ``data`` as JSON; a reader (or a kill) never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(temporary, path)


def read_json(path: Path) -> dict[str, object]:
    """The JSON object in ``path``, refused with the file named when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(
            f"{path}: unreadable state file ({exc})", field="path", rule="json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: expected a JSON object", field="path", rule="json")
    return data


class FileBackedFakeHypervisor(FakeHypervisor):
    """A :class:`FakeHypervisor` whose domains live in ``path`` (see the module docstring)."""

    def __init__(self, path: Path, uri: str | None = None) -> None:
        super().__init__(uri or f"{FAKE_SCHEME}://{path}")
        self.path = path
        self._depth = 0
        self._load()

    def _load(self) -> None:
        """Replace the domains in memory with the file's (another process may have written)."""
        if not self.path.exists():
            return
        loaded = {}
        for item in _strings(read_json(self.path).get("domains", []), self.path):
            if not isinstance(item, dict):
                raise InvalidInput(
                    f"{self.path}: expected domain objects", field="domains", rule="format"
                )
            domain = _from_json(item, self.path)
            loaded[domain.name] = domain
        self._domains = loaded

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The file locked and re-read for one call (re-entrant: migrate calls receive)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self.path.with_name(f"{self.path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._depth = 1
            try:
                self._load()
                yield
            finally:
                self._depth = 0
                fcntl.flock(lock, fcntl.LOCK_UN)

    def save(self) -> None:
        """Write the domains to the state file now."""
        domains = [_to_json(self._domains[name]) for name in sorted(self._domains)]
        write_atomically(self.path, {"domains": domains})

    @contextlib.contextmanager
    def _saving(self) -> Iterator[None]:
        """Re-read before the call and save after it, failed or not (a failed call may have
        changed something), under the file lock."""
        with self._locked():
            try:
                yield
            finally:
                self.save()

    def devices(self, name: str, *, live: bool = True) -> tuple[AttachedDevice, ...]:
        with self._locked():
            return super().devices(name, live=live)

    def xml(self, name: str) -> str:
        with self._locked():
            return super().xml(name)

    def state(self, name: str) -> DomainState:
        with self._locked():
            return super().state(name)

    def info(self, name: str) -> DomainInfo:
        with self._locked():
            return super().info(name)

    def list_domains(self) -> tuple[DomainInfo, ...]:
        with self._locked():
            return super().list_domains()

    def define(self, xml: str) -> str:
        with self._saving():
            return super().define(xml)

    def start(self, name: str) -> None:
        with self._saving():
            super().start(name)

    def stop(self, name: str) -> None:
        with self._saving():
            super().stop(name)

    def undefine(self, name: str) -> None:
        with self._saving():
            super().undefine(name)

    def attach_device(
        self, name: str, fragment_xml: str, *, live: bool = True, config: bool = True
    ) -> None:
        with self._saving():
            super().attach_device(name, fragment_xml, live=live, config=config)

    def detach_device(
        self, name: str, fragment_xml: str, *, live: bool = True, config: bool = True
    ) -> None:
        with self._saving():
            super().detach_device(name, fragment_xml, live=live, config=config)

    def migrate(self, name: str, dest_uri: str, options: MigrateOptions | None = None) -> None:
        with self._saving():
            super().migrate(name, dest_uri, options)

    def receive(self, info: DomainInfo, xml: str, *, persist: bool) -> None:
        with self._saving():
            super().receive(info, xml, persist=persist)


__all__ = [
    "FAKE_SCHEME",
    "FileBackedFakeHypervisor",
    "fake_hypervisor",
    "fake_state_path",
    "read_json",
    "write_atomically",
]
