"""Flavors as stored: create, list, show, delete.

The extra specs are the truth, as in Nova: an operator can paste a Nova flavor's extra specs
unchanged. The explicit fields of the API (``numa_nodes``, ``cpu_policy``, ``hugepage_size``)
are shorthands folded into the matching extra spec (``hw:numa_nodes``, ``hw:cpu_policy``,
``hw:mem_page_size``); giving both with different values is an error naming the key. The
result is validated with Nova's extra-spec validator and parsed by
:class:`pcifleet.domain.flavor.Flavor` before it is stored, so a stored flavor always parses.
The parsed values are also kept in columns for display and queries.

Flavors are global (not per project): every user may list and show them; only admins create
and delete them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy.exc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import FlavorRow
from pcifleet.control.services.principal import Principal
from pcifleet.control.services.ttlcache import DEFAULT_TTL_S, TtlCache
from pcifleet.domain import flavor as flavors
from pcifleet.domain.errors import AlreadyExists, InvalidFlavor, NotFound
from pcifleet.domain.flavor import Flavor

#: explicit field -> the extra spec it stands for
SHORTHANDS = {
    "numa_nodes": flavors.NUMA_NODES_SPEC,
    "cpu_policy": flavors.CPU_POLICY_SPEC,
    "hugepage_size": flavors.PAGE_SIZE_SPEC,
}


@dataclass(frozen=True, slots=True)
class FlavorRecord:
    id: str
    flavor: Flavor
    description: str | None
    created_at: dt.datetime

    @property
    def name(self) -> str:
        return self.flavor.name


def merge_extra_specs(
    extra_specs: Mapping[str, str] | None, shorthands: Mapping[str, object | None]
) -> dict[str, str]:
    """Fold the explicit fields into the extra specs; a contradiction names the key."""
    merged = dict(extra_specs or {})
    for field, key in SHORTHANDS.items():
        value = shorthands.get(field)
        if value is None:
            continue
        text = str(value)
        if key in merged and merged[key] != text:
            raise InvalidFlavor(
                f"{field}={text!r} contradicts extra spec {key}={merged[key]!r}",
                field=key,
                rule="consistent",
            )
        merged[key] = text
    return merged


def parse_flavor(
    name: str, vcpus: int, memory_mb: int, extra_specs: Mapping[str, str] | None = None
) -> Flavor:
    """Validate (Nova's API rules) and parse; every error names the extra spec key."""
    specs = dict(extra_specs or {})
    flavors.validate_extra_specs(specs)
    return Flavor.from_extra_specs(name, vcpus, memory_mb, specs)


def _record(row: FlavorRow) -> FlavorRecord:
    flavor = Flavor.from_extra_specs(row.name, row.vcpus, row.memory_mb, row.extra_specs)
    return FlavorRecord(row.id, flavor, row.description, row.created_at)


def _page_size_text(flavor: Flavor) -> str | None:
    return flavor.extra_specs.get(flavors.PAGE_SIZE_SPEC)


class FlavorService:
    def __init__(
        self, sessions: sessionmaker[Session], *, cache_ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        self._sessions = sessions
        #: flavors read for boots (see :mod:`pcifleet.control.services.ttlcache`)
        self._cache: TtlCache[str, FlavorRecord] = TtlCache(cache_ttl_s)

    def create(
        self, who: Principal, flavor: Flavor, *, description: str | None = None
    ) -> FlavorRecord:
        who.require_admin("creating a flavor")
        row = FlavorRow(
            id=str(uuid.uuid4()),
            name=flavor.name,
            vcpus=flavor.vcpus,
            memory_mb=flavor.memory_mb,
            numa_nodes=flavor.guest_numa_nodes,
            cpu_policy=flavor.cpu_policy.value,
            hugepage_size=_page_size_text(flavor),
            extra_specs=dict(flavor.extra_specs),
            description=description,
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except sqlalchemy.exc.IntegrityError as exc:
            raise AlreadyExists(
                f"a flavor named {flavor.name!r} already exists", name=flavor.name
            ) from exc
        finally:
            self._cache.clear()
        return _record(row)

    def list(self, who: Principal) -> list[FlavorRecord]:
        who.require_user("listing flavors")
        with self._sessions() as session:
            rows = session.scalars(select(FlavorRow).order_by(FlavorRow.name))
            return [_record(row) for row in rows]

    def show(self, who: Principal, name: str) -> FlavorRecord:
        who.require_user("showing a flavor")
        return self.get(name)

    def get(self, name: str) -> FlavorRecord:
        """The flavor named ``name`` (for boot requests; no principal needed).

        Reused for a second (this process's own writes are seen at once)."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        epoch = self._cache.epoch
        with self._sessions() as session:
            return self._cache.put(name, _record(_row(session, name)), epoch)

    def delete(self, who: Principal, name: str) -> None:
        """Remove the flavor; instances keep the copy they were booted with."""
        who.require_admin("deleting a flavor")
        try:
            with self._sessions.begin() as session:
                session.delete(_row(session, name))
        finally:
            self._cache.clear()


def _row(session: Session, name: str) -> FlavorRow:
    row = session.scalars(select(FlavorRow).where(FlavorRow.name == name)).first()
    if row is None:
        raise NotFound(f"flavor {name!r} not found", kind="flavor", name=name)
    return row
