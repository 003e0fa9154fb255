"""Live migration: plan, claim the destination, then complete or abort (the controller's part).

:meth:`MigrationService.plan` shows what would happen (the domain's per-device verdicts from
:mod:`pcifleet.domain.migration`, and the destination the scheduler would choose) and claims
nothing. :meth:`MigrationService.migrate` makes the destination claim: the same instance
request (size, NUMA layout, pinning, huge pages, device requests with their NUMA policies) is
scheduled on every host but the source, or on the named host only; the devices are claimed in
ONE transaction with the host generation compare-and-swap (the scheduler's claim), and a
``migrations`` row records the destination placement. All of this happens before the agent
unplugs anything, so a destination that cannot take the guest fails the request and leaves
the guest untouched.

While the migration is in flight the guest holds both hosts: its source devices (instance
row) and its destination devices (migration row, counted by host views). The agent runs the
move (:mod:`pcifleet.host.migrate`) and reports:

- :meth:`MigrationService.complete`: the source devices and their PF/VF relatives are freed,
  the destination placement becomes the instance's, its ports are re-bound to the new host and
  devices, in one transaction on the source host (CAS);
- :meth:`MigrationService.abort`: the destination devices are freed, the guest keeps its source.

Only admins start migrations (as Nova's default policy); complete and abort are for admins and
the source host's agent.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import DeviceRow, HostRow, InstanceRow, MigrationRow, PortRow
from pcifleet.control.db.repo import bump_generation, drop_released_vanished
from pcifleet.control.scheduler.claim import device_changes, write_device_changes
from pcifleet.control.scheduler.codec import (
    InstanceState,
    placement_from_json,
    placement_to_json,
    requests_from_json,
)
from pcifleet.control.scheduler.hostload import MIGRATING, HostHead, load_host, read_head
from pcifleet.control.scheduler.outcomes import Summary
from pcifleet.control.scheduler.scheduler import Claimed, HostChoice, Scheduler
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.instances import PortBinder, instance_request, utc_now
from pcifleet.control.services.principal import Principal
from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import (
    InvalidInput,
    MigrationRefused,
    MigrationStateError,
    NotFound,
    NoValidHost,
)
from pcifleet.domain.fit import release
from pcifleet.domain.migration import (
    Action,
    MigrationItem,
    MigrationPlan,
    PortInfo,
    plan_migration,
)
from pcifleet.domain.placement import InstanceRequest, Placement
from pcifleet.domain.request import Requester, RequesterKind
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import VnicType

Clock = Callable[[], dt.datetime]


class MigrationState(enum.StrEnum):
    MIGRATING = MIGRATING
    COMPLETED = "completed"
    ABORTED = "aborted"


@dataclass(frozen=True, slots=True)
class MigrationRecord:
    id: str
    instance_id: str
    state: MigrationState
    source_host_id: str | None
    dest_host_id: str | None
    #: the destination placement (devices per request, cells)
    placement: Placement
    plan: MigrationPlan
    reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What ``migrate`` answers: the plan (with the destination devices), and the migration
    (None for a dry run)."""

    plan: MigrationPlan
    migration: MigrationRecord | None = None


@dataclass(frozen=True, slots=True)
class _Guest:
    """An active instance as a migration needs it."""

    id: str
    host_id: str
    host: str
    request: InstanceRequest
    placement: Placement
    plan: MigrationPlan


class _MigrationWriter:
    """The migration's part of the scheduler's claim transaction."""

    def __init__(self, guest: _Guest, migration_id: str, now: dt.datetime) -> None:
        self.guest = guest
        self.migration_id = migration_id
        self.now = now
        self.plan: MigrationPlan | None = None

    def check(self, session: Session) -> None:
        # lock the instance row (PostgreSQL) so two migrations of one guest serialize
        state = session.scalar(
            select(InstanceRow.state).where(InstanceRow.id == self.guest.id).with_for_update()
        )
        if state != InstanceState.ACTIVE.value:
            raise MigrationStateError(f"instance {self.guest.id} is {state}, not active")
        if _in_flight(session, self.guest.id) is not None:
            raise MigrationStateError(f"instance {self.guest.id} is already migrating")

    def placed(self, session: Session, host: HostHead, placement: Placement) -> None:
        self.plan = self.guest.plan.with_destination(host.name, placement)
        session.add(
            MigrationRow(
                id=self.migration_id,
                instance_id=self.guest.id,
                source_host_id=self.guest.host_id,
                dest_host_id=host.id,
                state=MigrationState.MIGRATING.value,
                placement=placement_to_json(placement),
                plan=plan_to_json(self.plan),
                created_at=self.now,
                updated_at=self.now,
            )
        )
        session.flush()

    def unplaced(self, session: Session, summary: Summary) -> None:
        """Nothing to write: the caller raises with the reason, the guest stays as it is."""


def _in_flight(session: Session, instance_id: str) -> MigrationRow | None:
    return session.scalars(
        select(MigrationRow).where(
            MigrationRow.instance_id == instance_id,
            MigrationRow.state == MigrationState.MIGRATING.value,
        )
    ).first()


class MigrationService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        scheduler: Scheduler,
        binder: PortBinder | None = None,
        clock: Clock = utc_now,
    ) -> None:
        #: re-binds ports on complete (the networking service; None: no networking ports)
        self.binder = binder
        self._sessions = sessions
        self._scheduler = scheduler
        self._clock = clock

    # -- reading the guest ------------------------------------------------------------------

    def _guest(self, instance_id: str) -> _Guest:
        with self._sessions() as session:
            found = session.execute(
                select(InstanceRow, HostRow.name)
                .join(HostRow, HostRow.id == InstanceRow.host_id)
                .where(InstanceRow.id == instance_id)
                .execution_options(populate_existing=True)
            ).one_or_none()
            if found is None:
                raise NotFound(
                    f"instance {instance_id!r} not found or not placed",
                    kind="instance",
                    id=instance_id,
                )
            row, host = found
            if row.state != InstanceState.ACTIVE.value or row.placement is None:
                raise MigrationStateError(f"instance {instance_id} is {row.state}, not active")
            placement = placement_from_json(row.id, row.placement)
            requests = requests_from_json(row.requests or ())
            raw = row.flavor or {}
            flavor = parse_flavor(
                str(raw.get("name", "")),
                int(raw.get("vcpus", 1)),
                int(raw.get("memory_mb", 1)),
                {str(k): str(v) for k, v in (raw.get("extra_specs") or {}).items()},
            )
            request = instance_request(flavor, requests, row.id)
            plan = plan_migration(
                row.id,
                requests,
                placement.devices,
                _ports(session, row.id),
                _tags(session, str(row.host_id), placement.all_devices),
                host,
            )
            return _Guest(row.id, str(row.host_id), host, request, placement, plan)

    def _choice(self, guest: _Guest, host: str | None) -> HostChoice:
        """Every host but the source, or the named one only."""
        if host is None:
            return lambda host_id: host_id != guest.host_id
        with self._sessions() as session:
            host_id = session.scalar(select(HostRow.id).where(HostRow.name == host))
        if host_id is None:
            raise NotFound(f"host {host!r} not found", kind="host", id=host)
        if host_id == guest.host_id:
            raise InvalidInput(
                f"host {host!r} is the instance's current host; choose another",
                field="host",
                rule="not_source",
            )
        return lambda candidate: candidate == host_id

    # -- plan and migrate -------------------------------------------------------------------

    def plan(self, who: Principal, instance_id: str, host: str | None = None) -> MigrationPlan:
        """The plan with the destination the scheduler would choose now; claims nothing.

        A refused plan is returned as is (its items say why); when no host fits, NoValidHost
        names each host's reason per filter stage.
        """
        who.require_admin("planning a live migration")
        guest = self._guest(instance_id)
        if not guest.plan.allowed:
            return guest.plan
        explanation = self._scheduler.explain(guest.request, hosts=self._choice(guest, host))
        chosen = explanation.chosen
        if chosen is None or chosen.placement is None:
            raise _no_destination(instance_id, explanation.summary)
        return guest.plan.with_destination(chosen.host, chosen.placement)

    def migrate(
        self,
        who: Principal,
        instance_id: str,
        host: str | None = None,
        *,
        dry_run: bool = False,
    ) -> MigrationResult:
        """Claim the destination (atomically, before anything is unplugged) and record the
        migration; a dry run only plans."""
        if dry_run:
            return MigrationResult(self.plan(who, instance_id, host))
        who.require_admin("live-migrating an instance")
        guest = self._guest(instance_id)
        if not guest.plan.allowed:
            raise _refused(guest.plan)
        writer = _MigrationWriter(guest, str(uuid.uuid4()), self._clock())
        result = self._scheduler.claim(guest.request, writer, hosts=self._choice(guest, host))
        if not isinstance(result, Claimed):
            raise _no_destination(instance_id, result.summary)
        plan = guest.plan.with_destination(result.host.name, result.placement)
        return MigrationResult(plan, self.show(who, instance_id))

    # -- complete and abort -----------------------------------------------------------------

    def _require(self, who: Principal, instance_id: str, action: str) -> tuple[MigrationRow, str]:
        with self._sessions() as session:
            row = _in_flight(session, instance_id)
            if row is None:
                raise MigrationStateError(f"instance {instance_id} has no migration in flight")
            source = session.scalar(select(HostRow.name).where(HostRow.id == row.source_host_id))
            session.expunge(row)
        who.require_host(source or "", action)
        return row, source or ""

    def complete(self, who: Principal, instance_id: str) -> MigrationRecord:
        """The guest runs on the destination: free the source, move the placement, re-bind."""
        row, _ = self._require(who, instance_id, "completing a live migration")
        now = self._clock()

        def finish(session: Session) -> None:
            _close(session, row.id, MigrationState.COMPLETED, None, now)
            session.execute(
                update(InstanceRow)
                .where(InstanceRow.id == instance_id)
                # the source's claim stamp means nothing on the destination (scheduler.delta)
                .values(
                    host_id=row.dest_host_id,
                    placement=row.placement,
                    host_generation=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            self._rebind(session, instance_id, row)

        self._scheduler.release(str(row.source_host_id), instance_id, finish)
        return self._record(row.id)

    def abort(self, who: Principal, instance_id: str, reason: str) -> MigrationRecord:
        """The move failed (the guest still runs on the source): free the destination."""
        row, _ = self._require(who, instance_id, "aborting a live migration")
        now = self._clock()

        def finish(session: Session) -> None:
            _close(session, row.id, MigrationState.ABORTED, reason, now)

        if row.dest_host_id is None:  # the destination host was deleted meanwhile
            with self._sessions.begin() as session:
                finish(session)
        else:
            self._scheduler.release(row.dest_host_id, instance_id, finish)
        return self._record(row.id)

    def abort_in(self, session: Session, instance_id: str, reason: str) -> None:
        """Abort the guest's migration in flight inside the caller's transaction.

        The instance delete calls it in its release transaction: the destination devices
        are freed there too (with the destination host's compare-and-swap), so a deleted
        guest never leaves a destination claim behind, whatever fails after.
        """
        row = _in_flight(session, instance_id)
        if row is None:
            return
        if row.dest_host_id is not None:
            _free_destination(session, row.dest_host_id, instance_id)
        _close(session, row.id, MigrationState.ABORTED, reason, self._clock())

    def _rebind(self, session: Session, instance_id: str, row: MigrationRow) -> None:
        if self.binder is None or row.dest_host_id is None:
            return
        port_ids = list(
            session.scalars(select(PortRow.id).where(PortRow.instance_id == instance_id))
        )
        head = read_head(session, row.dest_host_id)
        if not port_ids or head is None:
            return
        requests = requests_from_json(
            session.scalar(select(InstanceRow.requests).where(InstanceRow.id == instance_id)) or ()
        )
        placement = placement_from_json(instance_id, row.placement)
        self.binder.unbind(session, instance_id)
        self.binder.bind(session, instance_id, head, port_ids, requests, placement)

    # -- reads ------------------------------------------------------------------------------

    def show(self, who: Principal, instance_id: str) -> MigrationRecord:
        """The instance's latest migration."""
        who.require_user("showing a live migration")
        with self._sessions() as session:
            migration_id = session.scalar(
                select(MigrationRow.id)
                .where(MigrationRow.instance_id == instance_id)
                .order_by(MigrationRow.created_at.desc(), MigrationRow.id)
                .limit(1)
            )
        if migration_id is None:
            raise NotFound(f"instance {instance_id!r} has no migration", kind="migration")
        return self._record(migration_id)

    def _record(self, migration_id: str) -> MigrationRecord:
        with self._sessions() as session:
            row = session.get(MigrationRow, migration_id, populate_existing=True)
            if row is None:
                raise NotFound(f"migration {migration_id!r} not found", kind="migration")
            return MigrationRecord(
                id=row.id,
                instance_id=row.instance_id,
                state=MigrationState(row.state),
                source_host_id=row.source_host_id,
                dest_host_id=row.dest_host_id,
                placement=placement_from_json(row.instance_id, row.placement),
                plan=plan_from_json(row.instance_id, row.plan or {}),
                reason=row.reason,
                created_at=row.created_at,
                updated_at=row.updated_at,
            )


def plan_to_json(plan: MigrationPlan) -> dict[str, Any]:
    """The plan as stored on the migration row (and close to what the API shows)."""
    return {
        "source_host": plan.source_host,
        "destination_host": plan.destination_host,
        "warnings": list(plan.warnings),
        "items": [
            {
                "requester": {"kind": i.requester.kind.value, "name": i.requester.name},
                "vnic_type": None if i.vnic_type is None else i.vnic_type.value,
                "action": i.action.value,
                "reason": i.reason,
                "request_index": i.request_index,
                "source": [str(a) for a in i.source],
                "destination": [str(a) for a in i.destination],
            }
            for i in plan.items
        ],
    }


def plan_from_json(instance_id: str, raw: Mapping[str, Any]) -> MigrationPlan:
    items = tuple(
        MigrationItem(
            requester=Requester(RequesterKind(i["requester"]["kind"]), str(i["requester"]["name"])),
            vnic_type=None if i.get("vnic_type") is None else VnicType(i["vnic_type"]),
            action=Action(i["action"]),
            reason=str(i.get("reason", "")),
            request_index=None if i.get("request_index") is None else int(i["request_index"]),
            source=tuple(PciAddress.parse(a) for a in i.get("source", ())),
            destination=tuple(PciAddress.parse(a) for a in i.get("destination", ())),
        )
        for i in raw.get("items", ())
    )
    return MigrationPlan(
        instance_id,
        items,
        tuple(str(w) for w in raw.get("warnings", ())),
        raw.get("source_host"),
        raw.get("destination_host"),
    )


def _close(
    session: Session, migration_id: str, state: MigrationState, reason: str | None, now: dt.datetime
) -> None:
    changed = session.connection().execute(
        update(MigrationRow)
        .where(MigrationRow.id == migration_id, MigrationRow.state == MIGRATING)
        .values(state=state.value, reason=reason, updated_at=now)
    )
    if changed.rowcount != 1:
        raise MigrationStateError(f"migration {migration_id} is no longer in flight")


def _free_destination(session: Session, host_id: str, instance_id: str) -> None:
    """What the scheduler's release does, in the caller's transaction: the host row lock
    (CAS) first, then the guest's devices there and their relatives freed."""
    head = read_head(session, host_id)
    if head is None:
        return
    view = load_host(session, head).view
    placement = view.placements.get(instance_id)
    if placement is None:
        return
    bump_generation(session, head.id, head.generation)
    after = release(view, instance_id)
    write_device_changes(session, head.id, device_changes(view, after, placement.all_devices))
    drop_released_vanished(session, head.id)


def _ports(session: Session, instance_id: str) -> list[PortInfo]:
    rows = session.execute(
        select(PortRow.id, PortRow.vnic_type)
        .where(PortRow.instance_id == instance_id)
        .order_by(PortRow.created_at, PortRow.id)
    )
    return [PortInfo(port_id, VnicType(vnic)) for port_id, vnic in rows]


def _tags(
    session: Session, host_id: str, addresses: Sequence[PciAddress]
) -> Mapping[PciAddress, Tags]:
    if not addresses:
        return {}
    rows = session.execute(
        select(DeviceRow.address, DeviceRow.tags).where(
            DeviceRow.host_id == host_id, DeviceRow.address.in_([str(a) for a in addresses])
        )
    )
    return {
        PciAddress.parse(address): Tags({str(k): str(v) for k, v in (tags or {}).items()})
        for address, tags in rows
    }


def _refused(plan: MigrationPlan) -> MigrationRefused:
    """The refusal naming each device that cannot move (its group or port, its address)."""
    named = [
        f"{i.label} ({', '.join(str(a) for a in i.source) or 'no device'})" for i in plan.refusals
    ]
    reasons = "; ".join(f"{name}: {i.reason}" for name, i in zip(named, plan.refusals, strict=True))
    return MigrationRefused(
        f"instance {plan.instance_id} cannot be live-migrated: {reasons}",
        instance=plan.instance_id,
        devices=", ".join(named),
    )


def _no_destination(instance_id: str, summary: Summary) -> NoValidHost:
    return NoValidHost(
        f"no destination for instance {instance_id}: {summary.sentence}",
        instance=instance_id,
        details=list(summary.details()),
    )
