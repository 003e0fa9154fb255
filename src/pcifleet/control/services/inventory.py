"""Inventory: hosts register, report what they have, and stay alive through heartbeats.

A report is the host's full inventory with the ``inventory_generation`` its agent last saw.
The controller diffs it against the database (Nova's ``PciDevTracker`` sync, done centrally):

- a new device is added (available, unless a relative in use blocks it);
- a known device whose facts changed is updated, including a type change (``type-PCI`` ->
  ``type-PF`` when SR-IOV gets enabled);
- a device no longer reported is removed — unless an instance holds it: then it is kept,
  flagged ``vanished`` and listed in the result, never silently dropped; it is un-flagged if
  it comes back.

The diff itself lives in :mod:`pcifleet.control.services.inventory_diff`.

A report whose generation is stale fails with :class:`ConcurrentUpdate` (409): another report
won, and the agent re-reads before trying again. A report that changes nothing writes only
the heartbeat and bumps no generation (agents also report as a heartbeat).

Every write that changes devices compare-and-swaps ``hosts.generation`` (see
:mod:`pcifleet.control.db.repo`). Reports and holds also lock the host row first, so a long
report is not starved by many short claims; a write that still loses (a deadlock or a
serialization failure on PostgreSQL, a generation that moved) is retried ``claim_retries``
times with a short randomized back-off, then fails with ConcurrentUpdate.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeVar

import sqlalchemy.exc
from sqlalchemy import (
    ColumnElement,
    Integer,
    cast,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import NAME_LENGTH, DeviceRow, HostRow
from pcifleet.control.db.records import HostRecord, HostState, StoredDevice
from pcifleet.control.db.repo import (
    bump_generation,
    cells_to_json,
    device_from_row,
    find_host,
    host_device_rows,
    host_record,
    stored_device,
)
from pcifleet.control.services.inventory_diff import (
    check_unique,
    load_snapshots,
    plan_report,
    write_plan,
)
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.errors import ConcurrentUpdate, InvalidInput, NotFound
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.state import Family, Operation, transition

Clock = Callable[[], dt.datetime]
T = TypeVar("T")

_S = DeviceState
#: PostgreSQL error codes worth retrying: serialization failure, deadlock detected
_RETRYABLE_PGCODES: Final = frozenset({"40001", "40P01"})
_BACKOFF_S: Final = 0.005
_EMPTY_LABELS: Final[Mapping[PciAddress, str]] = MappingProxyType({})


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- what the service takes and returns -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class InventoryReport:
    """A host's full inventory as its agent sees it (device ``state``/``owner`` are ignored)."""

    devices: Sequence[Device]
    cells: Sequence[NumaCell] = ()
    #: None keeps the stored ratio
    cpu_allocation_ratio: float | None = None
    #: human names (pci.ids) by address, for display
    labels: Mapping[PciAddress, str] = field(default_factory=lambda: _EMPTY_LABELS)


@dataclass(frozen=True, slots=True)
class ReportResult:
    host_id: str
    #: the host's compare-and-swap generation after the report
    generation: int
    #: what the agent must echo in its next report
    inventory_generation: int
    added: int
    updated: int
    removed: int
    unchanged: int
    #: devices held by an instance that the host no longer reports (kept, flagged vanished)
    kept_vanished: tuple[PciAddress, ...]
    #: flagged devices that the host reports again (un-flagged)
    reappeared: tuple[PciAddress, ...]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.reappeared)


@dataclass(frozen=True, slots=True)
class HostSummary:
    host: HostRecord
    devices_by_state: Mapping[DeviceState, int]
    vanished: int

    @property
    def device_count(self) -> int:
        return sum(self.devices_by_state.values())


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as listed and shown: the stored device and its host's name."""

    id: str
    host_id: str
    host_name: str
    device: Device
    request_id: str | None
    resource_class: str | None
    vanished: bool
    vanished_at: dt.datetime | None
    label: str | None

    @classmethod
    def of(cls, stored: StoredDevice, host_name: str) -> DeviceInfo:
        return cls(
            stored.id,
            stored.host_id,
            host_name,
            stored.device,
            stored.request_id,
            stored.resource_class,
            stored.vanished,
            stored.vanished_at,
            stored.label,
        )


@dataclass(frozen=True, slots=True)
class HostDetail:
    host: HostRecord
    devices: tuple[DeviceInfo, ...]


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Device list filters; None means "any". ``host`` is a host id or name."""

    host: str | None = None
    dev_type: DeviceType | None = None
    state: DeviceState | None = None
    vendor_id: str | None = None
    product_id: str | None = None
    physical_network: str | None = None
    numa_node: int | None = None
    vanished: bool | None = None
    instance_id: str | None = None


# --- the service ---------------------------------------------------------------------------


class _HostMoved(Exception):
    """The host generation moved between our read and our write: recompute."""


class InventoryService:
    """Hosts, their devices and their liveness. Methods run one transaction each."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, clock: Clock = utc_now
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._clock = clock

    # -- plumbing --

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _retrying(self, work: Callable[[Session], T], what: str) -> T:
        """Run ``work`` in a transaction, again while a concurrent writer overtook it."""
        attempts = self._settings.claim_retries + 1
        for attempt in range(attempts):
            try:
                with self._transaction() as session:
                    return work(session)
            except _HostMoved:
                pass
            except sqlalchemy.exc.OperationalError as error:
                if _pgcode(error) not in _RETRYABLE_PGCODES:
                    raise
            _backoff(attempt)
        raise ConcurrentUpdate(
            f"{what}: the host kept changing concurrently; gave up after {attempts} attempts",
            attempts=attempts,
        )

    # -- hosts --

    def register_host(self, name: str, hypervisor_uri: str | None = None) -> HostRecord:
        """The host called ``name``, created on first registration (idempotent, race-safe);
        ``hypervisor_uri`` (where live migrations reach it) is stored when given."""
        _check_host_name(name)
        now = self._clock()
        for _ in range(2):
            try:
                with self._transaction() as session:
                    return self._register(session, name, now, hypervisor_uri)
            except sqlalchemy.exc.IntegrityError:
                continue  # another controller registered it first: read theirs
        with self._transaction() as session:
            return host_record(find_host(session, name))

    def _register(
        self, session: Session, name: str, now: dt.datetime, hypervisor_uri: str | None = None
    ) -> HostRecord:
        row = session.scalars(select(HostRow).where(HostRow.name == name)).one_or_none()
        if row is not None and hypervisor_uri is not None and row.hypervisor_uri != hypervisor_uri:
            row.hypervisor_uri = hypervisor_uri
            session.flush()
        if row is None:
            row = HostRow(
                id=str(uuid.uuid4()),
                name=name,
                generation=0,
                inventory_generation=0,
                state=HostState.UP.value,
                last_heartbeat=now,
                cells=[],
                physnets={},
                hypervisor_uri=hypervisor_uri,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
        return host_record(row)

    def heartbeat(self, host: str) -> HostRecord:
        """The host is alive: mark it up and remember when."""
        now = self._clock()
        with self._transaction() as session:
            row = find_host(session, host)
            row.state = HostState.UP.value
            row.last_heartbeat = now
            session.flush()
            return host_record(row)

    def mark_down_stale(self, now: dt.datetime | None = None) -> tuple[str, ...]:
        """Mark down every up host silent for longer than the heartbeat timeout.

        Returns the names of the hosts marked down. Down hosts receive no new guests.
        """
        moment = now or self._clock()
        limit = moment - dt.timedelta(seconds=self._settings.heartbeat_timeout_s)
        stale = or_(HostRow.last_heartbeat.is_(None), HostRow.last_heartbeat < limit)
        with self._transaction() as session:
            names = session.scalars(
                update(HostRow)
                .where(HostRow.state == HostState.UP.value, stale)
                .values(state=HostState.DOWN.value, updated_at=moment)
                .returning(HostRow.name)
                .execution_options(synchronize_session=False)
            ).all()
        return tuple(sorted(names))

    def set_disabled(self, host: str, disabled: bool, reason: str | None = None) -> HostRecord:
        """Operator switch: a disabled host receives no new guests whatever its heartbeat."""
        with self._transaction() as session:
            row = find_host(session, host)
            row.disabled = disabled
            row.disabled_reason = reason if disabled else None
            session.flush()
            return host_record(row)

    # -- reports --

    def report(self, host: str, generation: int, inventory: InventoryReport) -> ReportResult:
        """Apply a full inventory report made at ``generation`` (the agent's last seen).

        Raises ConcurrentUpdate when ``generation`` is not the host's current inventory
        generation (another report won); nothing is written then.
        """
        check_unique(inventory.devices)
        return self._retrying(
            lambda session: self._apply_report(session, host, generation, inventory),
            f"inventory report of host {host}",
        )

    def _apply_report(
        self, session: Session, host: str, expected: int, inventory: InventoryReport
    ) -> ReportResult:
        now = self._clock()
        row = find_host(session, host, lock=True)
        _check_inventory_generation(row, expected)
        read_generation = row.generation
        stored = load_snapshots(session, row.id)
        plan = plan_report(row.id, stored, inventory.devices, inventory.labels, now)
        host_values = _host_values(row, inventory)
        changed = plan.changes_devices or bool(host_values)
        if changed:
            self._swap_host(session, row.id, read_generation, expected, host_values, now)
            write_plan(session, plan, now)
        else:
            _touch(session, row.id, now)
        session.expire_all()
        fresh = session.get_one(HostRow, row.id)
        return ReportResult(
            host_id=fresh.id,
            generation=fresh.generation,
            inventory_generation=fresh.inventory_generation,
            added=len(plan.inserts),
            updated=plan.updated,
            removed=len(plan.deletes),
            unchanged=plan.unchanged,
            kept_vanished=tuple(plan.kept_vanished),
            reappeared=tuple(plan.reappeared),
        )

    def _swap_host(
        self,
        session: Session,
        host_id: str,
        read_generation: int,
        expected: int,
        values: Mapping[str, Any],
        now: dt.datetime,
    ) -> None:
        """The compare-and-swap of a report, first in the transaction (locks the host row)."""
        result = session.execute(
            update(HostRow)
            .where(
                HostRow.id == host_id,
                HostRow.generation == read_generation,
                HostRow.inventory_generation == expected,
            )
            .values(
                generation=HostRow.generation + 1,
                inventory_generation=HostRow.inventory_generation + 1,
                state=HostState.UP.value,
                last_heartbeat=now,
                last_report=now,
                updated_at=now,
                **values,
            )
            .execution_options(synchronize_session=False)
        )
        assert isinstance(result, CursorResult)
        if result.rowcount != 1:
            raise _HostMoved()

    # -- operator holds --

    def reserve_device(self, device_id: str) -> DeviceInfo:
        """Hold a device nobody holds out of scheduling (its PF follows: unclaimable).

        Allowed states are the domain's transition table (:mod:`pcifleet.domain.state`):
        available, unclaimable or unavailable; anything else is InvalidTransition (409).
        """
        return self._retrying(
            lambda session: self._hold(session, device_id, reserve=True),
            f"reserve device {device_id}",
        )

    def unreserve_device(self, device_id: str) -> DeviceInfo:
        """Give a reserved device back to scheduling (blocked if a relative is in use)."""
        return self._retrying(
            lambda session: self._hold(session, device_id, reserve=False),
            f"unreserve device {device_id}",
        )

    def _hold(self, session: Session, device_id: str, reserve: bool) -> DeviceInfo:
        # host generation first, then the device: a writer that changes the device after
        # our read of the generation makes our compare-and-swap fail
        host = find_host(session, _device_row(session, device_id).host_id, lock=True)
        _bump(session, host.id, host.generation)
        row = _device_row(session, device_id, fresh=True)
        op = Operation.RESERVE if reserve else Operation.UNRESERVE
        _transition_rows(_family_rows(session, row), row, op)
        session.flush()
        return DeviceInfo.of(stored_device(row), host.name)

    # -- reads --

    def list_hosts(self, state: HostState | None = None) -> list[HostSummary]:
        with self._transaction() as session:
            query = select(HostRow).order_by(HostRow.name)
            if state is not None:
                query = query.where(HostRow.state == state.value)
            hosts = [host_record(row) for row in session.scalars(query)]
            counts = _device_counts(session)
        return [
            HostSummary(
                host,
                MappingProxyType(counts.get(host.id, ({}, 0))[0]),
                counts.get(host.id, ({}, 0))[1],
            )
            for host in hosts
        ]

    def show_host(self, host: str) -> HostDetail:
        with self._transaction() as session:
            row = find_host(session, host)
            devices = tuple(
                DeviceInfo.of(stored_device(device), row.name)
                for device in host_device_rows(session, row.id)
            )
            return HostDetail(host_record(row), devices)

    def list_devices(
        self, filters: DeviceFilter = DeviceFilter(), limit: int | None = None, offset: int = 0
    ) -> list[DeviceInfo]:
        """Devices matching every given filter, ordered by host name then address."""
        with self._transaction() as session:
            query = (
                select(DeviceRow, HostRow.name)
                .join(HostRow, HostRow.id == DeviceRow.host_id)
                .where(*_device_conditions(filters))
                .order_by(HostRow.name, DeviceRow.address)
                .offset(offset)
                .limit(limit)
            )
            return [DeviceInfo.of(stored_device(row), name) for row, name in session.execute(query)]

    def show_device(self, device_id: str) -> DeviceInfo:
        with self._transaction() as session:
            row = _device_row(session, device_id)
            host = session.get_one(HostRow, row.host_id)
            return DeviceInfo.of(stored_device(row), host.name)


# --- helpers -------------------------------------------------------------------------------


def _backoff(attempt: int) -> None:
    """A short randomized pause so that retrying writers do not collide in lockstep."""
    time.sleep(random.uniform(0, _BACKOFF_S * (attempt + 1)))


def _pgcode(error: sqlalchemy.exc.OperationalError) -> str | None:
    code = getattr(error.orig, "sqlstate", None)
    return code if isinstance(code, str) else None


def _check_host_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise InvalidInput(
            "host name: must be a non-empty string without surrounding blanks",
            field="name",
            rule="format",
        )
    if len(name) > NAME_LENGTH:
        raise InvalidInput(
            f"host name: at most {NAME_LENGTH} characters", field="name", rule="length"
        )


def _check_inventory_generation(row: HostRow, expected: int) -> None:
    if row.inventory_generation != expected:
        raise ConcurrentUpdate(
            f"host {row.name}: inventory generation is {row.inventory_generation}, "
            f"the report was made at {expected}; re-read the host and report again",
            host=row.name,
            expected=expected,
            current=row.inventory_generation,
        )


def _host_values(row: HostRow, inventory: InventoryReport) -> dict[str, Any]:
    """The host columns the report changes (empty when it changes none)."""
    values: dict[str, Any] = {}
    cells = cells_to_json(inventory.cells)
    if cells != row.cells:
        values["cells"] = cells
    ratio = inventory.cpu_allocation_ratio
    if ratio is not None and ratio != row.cpu_allocation_ratio:
        values["cpu_allocation_ratio"] = ratio
    return values


def _touch(session: Session, host_id: str, now: dt.datetime) -> None:
    """A report that changes nothing still proves the host alive."""
    session.execute(
        update(HostRow)
        .where(HostRow.id == host_id)
        .values(state=HostState.UP.value, last_heartbeat=now, last_report=now)
        .execution_options(synchronize_session=False)
    )


def _bump(session: Session, host_id: str, generation: int) -> None:
    try:
        bump_generation(session, host_id, generation)
    except ConcurrentUpdate:
        raise _HostMoved() from None


def _device_row(session: Session, device_id: str, fresh: bool = False) -> DeviceRow:
    row = session.get(DeviceRow, device_id, populate_existing=fresh)
    if row is None:
        raise NotFound(f"device {device_id!r} not found", field="device", rule="exists")
    return row


def _family_rows(session: Session, row: DeviceRow) -> list[DeviceRow]:
    """``row``'s family as rows, head first: a PF and its VFs, a VF's PF and siblings, or
    the device alone (one query)."""
    head = row.address if row.dev_type == DeviceType.PF else row.parent_address
    if head is None:
        return [row]
    members = session.scalars(
        select(DeviceRow)
        .where(
            DeviceRow.host_id == row.host_id,
            or_(DeviceRow.address == head, DeviceRow.parent_address == head),
        )
        .order_by(DeviceRow.address)
    ).all()
    pf = [m for m in members if m.address == head and m.dev_type == DeviceType.PF]
    return pf + [m for m in members if m.address != head]


def _transition_rows(rows: Sequence[DeviceRow], row: DeviceRow, op: Operation) -> None:
    """Apply ``op`` to ``row`` through the domain's one transition table; write back states."""
    devices = [device_from_row(member) for member in rows]
    has_head = bool(rows) and rows[0].dev_type == DeviceType.PF
    family = Family(devices[0], tuple(devices[1:])) if has_head else Family(None, tuple(devices))
    changed = transition(family, PciAddress.parse(row.address), op)
    for member, device in zip(rows, changed.members, strict=True):
        if member.state != device.state:
            member.state = device.state.value


def _device_counts(session: Session) -> dict[str, tuple[dict[DeviceState, int], int]]:
    """Per host: device count by state, and the number of vanished devices (one query)."""
    rows = session.execute(
        select(
            DeviceRow.host_id,
            DeviceRow.state,
            func.count(),
            func.sum(cast(DeviceRow.vanished, Integer)),
        ).group_by(DeviceRow.host_id, DeviceRow.state)
    ).all()
    counts: dict[str, tuple[dict[DeviceState, int], int]] = {}
    for host_id, state, count, vanished in rows:
        by_state, total_vanished = counts.get(host_id, ({}, 0))
        by_state[DeviceState(state)] = int(count)
        counts[host_id] = (by_state, total_vanished + int(vanished or 0))
    return counts


def _device_conditions(filters: DeviceFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.host is not None:
        conditions.append(or_(HostRow.id == filters.host, HostRow.name == filters.host))
    simple: list[tuple[Any, Any]] = [
        (DeviceRow.dev_type, filters.dev_type),
        (DeviceRow.state, filters.state),
        (DeviceRow.vendor_id, filters.vendor_id),
        (DeviceRow.product_id, filters.product_id),
        (DeviceRow.numa_node, filters.numa_node),
        (DeviceRow.vanished, filters.vanished),
        (DeviceRow.instance_id, filters.instance_id),
    ]
    conditions.extend(column == _plain(value) for column, value in simple if value is not None)
    if filters.physical_network is not None:
        physnet = DeviceRow.tags["physical_network"].as_string()
        conditions.append(physnet == filters.physical_network)
    return conditions


def _plain(value: object) -> object:
    return value.value if isinstance(value, DeviceType | DeviceState) else value
