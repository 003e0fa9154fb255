"""Device groups (Nova's aliases) as stored, shared use cases: create, list, show, update,
delete, per-project quotas, and loading a configuration file.

Every group is validated by the domain (:class:`pcifleet.domain.group.DeviceGroup`) before it
is stored, so the database only ever holds groups the scheduler can use. Visibility follows
the owner: public groups (no project) are visible to everyone; a private group only to its
project and to admins. A group that a caller may not see is reported as not found, so private
names do not leak. Members may create and change only their own project's private groups
(omitting the project makes the group theirs); public groups and quotas are the operator's.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy.exc
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import DeviceGroupRow, GroupQuotaRow
from pcifleet.control.services.principal import Principal, Role
from pcifleet.control.services.ttlcache import DEFAULT_TTL_S, TtlCache
from pcifleet.domain.errors import AlreadyExists, InvalidGroup, NotFound, UnknownGroup
from pcifleet.domain.group import DeviceGroup, load_groups
from pcifleet.domain.nova import groups_from_nova_alias

#: where a group was defined: through the API, or loaded from a configuration file
SOURCE_API = "api"
SOURCE_CONFIG = "config"
_SUFFIX_FORMATS = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "nova"}


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A stored group: the domain group plus what the controller keeps about it."""

    id: str
    group: DeviceGroup
    description: str | None
    source: str
    #: (project, limit) pairs, sorted by project; filtered to what the caller may see
    quotas: tuple[tuple[str, int], ...]
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def name(self) -> str:
        return self.group.name

    def quota_for(self, project: str) -> int | None:
        return dict(self.quotas).get(project)


@dataclass(frozen=True, slots=True)
class LoadResult:
    created: tuple[str, ...]
    updated: tuple[str, ...]


def read_groups_file(path: Path, fmt: str | None = None) -> tuple[DeviceGroup, ...]:
    """Groups from a configuration file: pcifleet's format or Nova ``[pci] alias`` values.

    ``fmt`` is ``toml``, ``yaml`` or ``nova`` (default: from the suffix: ``.toml``, ``.yaml``
    or ``.yml``, ``.json``). A Nova file holds one alias JSON object, or a JSON list of them
    (one per ``[pci] alias`` value), and is read with Nova's rules and messages.
    """
    kind = fmt or _SUFFIX_FORMATS.get(path.suffix.lower())
    if kind not in (*_SUFFIX_FORMATS.values(),):
        allowed = ", ".join(sorted(set(_SUFFIX_FORMATS.values())))
        raise InvalidGroup(
            f"file {path}: unknown format {kind or path.suffix!r} (use one of: {allowed})",
            field="format",
            rule="enum",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidGroup(f"file {path}: {exc}", field="file", rule="readable") from None
    if kind == "nova":
        return groups_from_nova_alias(_nova_values(text))
    return load_groups(text, kind)


def _nova_values(text: str) -> list[str]:
    """Split a JSON list into one alias value per item; anything else is one value."""
    try:
        document = json.loads(text)
    except ValueError:
        return [text]
    if isinstance(document, list):
        return [json.dumps(item) for item in document]
    return [text]


def _to_group(row: DeviceGroupRow) -> DeviceGroup:
    return DeviceGroup.from_dict(
        {
            "name": row.name,
            "match": row.spec,
            "device_type": row.device_type,
            "numa_policy": row.numa_policy,
            "live_migratable": row.live_migratable,
            "resource_class": row.resource_class,
            "traits": row.traits,
            "owner": row.project,
        }
    )


def _write(row: DeviceGroupRow, group: DeviceGroup) -> None:
    native = group.to_dict()
    row.name = group.name
    row.project = group.owner
    match = native["match"]
    assert isinstance(match, list)
    row.spec = match
    row.device_type = None if group.device_type is None else group.device_type.value
    row.numa_policy = group.numa_policy.value
    row.live_migratable = group.live_migratable
    row.resource_class = group.resource_class
    row.traits = list(group.traits)


def _record(row: DeviceGroupRow, quotas: Iterable[GroupQuotaRow], who: Principal) -> GroupRecord:
    seen = sorted((q.project, q.limit) for q in quotas if who.is_admin or q.project == who.project)
    return GroupRecord(
        row.id,
        _to_group(row),
        row.description,
        row.source,
        tuple(seen),
        row.created_at,
        row.updated_at,
    )


def _require_owner(who: Principal, owner: str | None, action: str) -> None:
    """Public groups are the operator's; private ones their project's (and the operator's)."""
    if owner is None:
        who.require_admin(f"{action} of a public group")
    else:
        who.require_project(owner, action)


class GroupService:
    def __init__(
        self, sessions: sessionmaker[Session], *, cache_ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        self._sessions = sessions
        #: project -> groups it sees, read for boots (:mod:`pcifleet.control.services.ttlcache`)
        self._visible: TtlCache[str, dict[str, DeviceGroup]] = TtlCache(cache_ttl_s)
        #: project -> names of the groups it has a quota on (most projects: none)
        self._quota_groups: TtlCache[str, frozenset[str]] = TtlCache(cache_ttl_s)

    # -- queries -------------------------------------------------------------------------

    def list(self, who: Principal, *, project: str | None = None) -> list[GroupRecord]:
        """Groups the caller may see, by name; ``project`` narrows to public + that project's."""
        who.require_user("listing groups")
        with self._sessions() as session:
            query = select(DeviceGroupRow).order_by(DeviceGroupRow.name)
            scope = project if project is not None else (None if who.is_admin else who.project)
            if scope is not None or not who.is_admin:
                query = query.where(
                    or_(DeviceGroupRow.project.is_(None), DeviceGroupRow.project == scope)
                )
            rows = list(session.scalars(query))
            quotas = _quotas(session, [row.id for row in rows])
            return [_record(row, quotas.get(row.id, []), who) for row in rows]

    def show(self, who: Principal, name: str) -> GroupRecord:
        who.require_user("showing a group")
        with self._sessions() as session:
            row = _visible_row(session, who, name)
            return _record(row, _quotas(session, [row.id]).get(row.id, []), who)

    def visible_groups(self, project: str, *, need: Iterable[str] = ()) -> dict[str, DeviceGroup]:
        """Every group ``project`` may request, by name (for building boot requests).

        Reused for a second (this process's own writes are seen at once), unless it lacks a
        group named in ``need`` (one created since, perhaps by another process).
        """
        cached = self._visible.get(project)
        if cached is not None and all(name in cached for name in need):
            return dict(cached)
        epoch = self._visible.epoch
        with self._sessions() as session:
            rows = session.scalars(
                select(DeviceGroupRow).where(
                    or_(DeviceGroupRow.project.is_(None), DeviceGroupRow.project == project)
                )
            )
            found = {row.name: _to_group(row) for row in rows}
        return dict(self._visible.put(project, found, epoch))

    def resolve(self, project: str, names: Iterable[str]) -> dict[str, DeviceGroup]:
        """The groups named in a request, as ``project`` sees them; UnknownGroup otherwise."""
        visible = self.visible_groups(project)
        for name in names:
            if name not in visible:
                raise UnknownGroup(f"PCI alias {name} is not defined", name=name)
        return {name: visible[name] for name in names}

    def quota_limit(self, group_name: str, project: str) -> int | None:
        """The project's limit on devices of the group in use (None: unlimited)."""
        with self._sessions() as session:
            return session.scalar(
                select(GroupQuotaRow.limit)
                .join(DeviceGroupRow, DeviceGroupRow.id == GroupQuotaRow.group_id)
                .where(DeviceGroupRow.name == group_name, GroupQuotaRow.project == project)
            )

    def quota_groups(self, project: str) -> frozenset[str]:
        """The groups ``project`` has a quota on, reused like :meth:`visible_groups`.

        A boot checks (with locked quota rows) only the groups named here, so the many boots
        of projects without quotas skip that query. The empty answer is cached too: a quota
        set through another controller process applies to this process's boots after at most
        ``cache_ttl_s`` seconds (this process's own quota writes apply at once).
        """
        cached = self._quota_groups.get(project)
        if cached is not None:
            return cached
        epoch = self._quota_groups.epoch
        with self._sessions() as session:
            names = session.scalars(
                select(DeviceGroupRow.name)
                .join(GroupQuotaRow, DeviceGroupRow.id == GroupQuotaRow.group_id)
                .where(GroupQuotaRow.project == project)
            )
            found = frozenset(str(name) for name in names)
        return self._quota_groups.put(project, found, epoch)

    # -- changes -------------------------------------------------------------------------

    def create(
        self,
        who: Principal,
        group: DeviceGroup,
        *,
        description: str | None = None,
        source: str = SOURCE_API,
    ) -> GroupRecord:
        if who.role is Role.MEMBER and group.owner is None:
            group = replace(group, owner=who.project)
        _require_owner(who, group.owner, "creation")
        row = DeviceGroupRow(id=str(uuid.uuid4()), description=description, source=source)
        _write(row, group)
        with self._commit(group.name) as session:
            session.add(row)
        return _record(row, [], who)

    def update(
        self,
        who: Principal,
        name: str,
        changes: Mapping[str, object],
        *,
        description: str | None = None,
    ) -> GroupRecord:
        """Apply native-format ``changes`` (any key but ``name``); validated as a whole group."""
        who.require_user("changing a group")
        if "name" in changes:
            raise InvalidGroup("name: cannot be changed", field="name", rule="immutable")
        with self._commit(name) as session:
            row = _visible_row(session, who, name)
            _require_owner(who, row.project, "change")
            group = DeviceGroup.from_dict({**_to_group(row).to_dict(), **changes})
            _require_owner(who, group.owner, "change")
            _write(row, group)
            if description is not None:
                row.description = description
            session.flush()
            quotas = _quotas(session, [row.id]).get(row.id, [])
            return _record(row, quotas, who)

    def delete(self, who: Principal, name: str) -> None:
        who.require_user("deleting a group")
        with self._commit(name) as session:
            row = _visible_row(session, who, name)
            _require_owner(who, row.project, "deletion")
            session.execute(delete(GroupQuotaRow).where(GroupQuotaRow.group_id == row.id))
            session.delete(row)

    def set_quota(self, who: Principal, name: str, project: str, limit: int | None) -> GroupRecord:
        """Limit ``project`` to ``limit`` devices of the group in use; None removes the limit."""
        who.require_admin("setting a quota")
        if limit is not None and limit < 0:
            raise InvalidGroup("limit: must be >= 0", field="limit", rule="minimum")
        with self._commit(name) as session:
            row = _visible_row(session, who, name)
            quota = session.get(GroupQuotaRow, (project, row.id))
            if limit is None and quota is not None:
                session.delete(quota)
            elif limit is not None and quota is None:
                session.add(GroupQuotaRow(project=project, group_id=row.id, limit=limit))
            elif quota is not None and limit is not None:
                quota.limit = limit
            session.flush()
            return _record(row, _quotas(session, [row.id]).get(row.id, []), who)

    def load(self, groups: Iterable[DeviceGroup], *, source: str = SOURCE_CONFIG) -> LoadResult:
        """Create or replace groups from configuration (as the operator), in one transaction."""
        created: list[str] = []
        updated: list[str] = []
        with self._commit("") as session:
            for group in groups:
                row = session.scalars(
                    select(DeviceGroupRow).where(DeviceGroupRow.name == group.name)
                ).first()
                if row is None:
                    row = DeviceGroupRow(id=str(uuid.uuid4()), source=source)
                    session.add(row)
                    created.append(group.name)
                else:
                    row.source = source
                    updated.append(group.name)
                _write(row, group)
                session.flush()
        return LoadResult(tuple(created), tuple(updated))

    # -- helpers -------------------------------------------------------------------------

    @contextmanager
    def _commit(self, name: str) -> Iterator[Session]:
        try:
            with _unique_names(self._sessions, name) as session:
                yield session
        finally:
            self._visible.clear()
            self._quota_groups.clear()


def _visible_row(session: Session, who: Principal, name: str) -> DeviceGroupRow:
    row = session.scalars(select(DeviceGroupRow).where(DeviceGroupRow.name == name)).first()
    if row is None or not who.can_see_project(row.project):
        raise NotFound(f"device group {name!r} not found", kind="group", name=name)
    return row


def _quotas(session: Session, ids: list[str]) -> dict[str, list[GroupQuotaRow]]:
    out: dict[str, list[GroupQuotaRow]] = {}
    if not ids:
        return out
    for quota in session.scalars(select(GroupQuotaRow).where(GroupQuotaRow.group_id.in_(ids))):
        out.setdefault(quota.group_id, []).append(quota)
    return out


@contextmanager
def _unique_names(sessions: sessionmaker[Session], name: str) -> Iterator[Session]:
    """A session in a transaction; a unique-name clash at commit becomes AlreadyExists."""
    try:
        with sessions.begin() as session:
            yield session
    except sqlalchemy.exc.IntegrityError as exc:
        raise AlreadyExists(f"a device group named {name!r} already exists", name=name) from exc
