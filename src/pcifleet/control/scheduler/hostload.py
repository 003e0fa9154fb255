"""A host's :class:`~pcifleet.domain.hoststate.HostState`, read from the database.

The database is the truth; these readers turn it into the domain's indexed host view:

- :func:`read_head` reads the small part every claim needs first (generation, liveness);
- :func:`load_host` reads one host whole (its device rows and the placements of its live
  instances) with Core selects of plain tuples, so a cache miss costs one host's rows and no
  ORM objects;
- :func:`load_fleet` reads every host at start through the bulk path
  (:func:`pcifleet.control.db.fleet.iter_fleet`). Hosts with identical hardware and no guests
  share one built view (only the name differs), so 5,000 identical hosts cost one build.

Only assignable devices are stored (the agent reports what its device specs qualify), so every
device row belongs in the view; vanished devices still held stay in it (held, never free).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import Session

from pcifleet.control.db.fleet import DEVICE_COLUMNS, DeviceDecoder, iter_fleet
from pcifleet.control.db.models import Base, DeviceRow, HostRow, InstanceRow, MigrationRow
from pcifleet.control.db.records import HostState as Liveness
from pcifleet.control.db.repo import cells_from_json
from pcifleet.control.scheduler.codec import LIVE_STATES, placement_from_json
from pcifleet.domain.device import Device
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.placement import Placement

#: ``migrations.state`` of a move in flight
MIGRATING: Final = "migrating"


@dataclass(frozen=True, slots=True)
class HostHead:
    """What a claim reads first: which version of the host it is looking at, and if it is up."""

    id: str
    name: str
    generation: int
    schedulable: bool


@dataclass(frozen=True, slots=True)
class LoadedHost:
    head: HostHead
    view: HostState


def _schedulable(state: str, disabled: bool) -> bool:
    return state == Liveness.UP.value and not disabled


_HOSTS = Base.metadata.tables["hosts"]
#: built once: Core statements skip the ORM's per-call compilation (a claim runs _HEAD per
#: host, every catch-up runs _HEADS)
_HEADS = select(_HOSTS.c.id, _HOSTS.c.name, _HOSTS.c.generation, _HOSTS.c.state, _HOSTS.c.disabled)
_HEAD = _HEADS.where(_HOSTS.c.id == bindparam("host_id"))


def read_head(session: Session, host_id: str) -> HostHead | None:
    row = session.connection().execute(_HEAD, {"host_id": host_id}).one_or_none()
    if row is None:
        return None
    return HostHead(row[0], row[1], row[2], _schedulable(row[3], row[4]))


def read_heads(session: Session) -> list[HostHead]:
    """Every host's head (the index's catch-up query: a few columns per host)."""
    rows = session.connection().execute(_HEADS)
    return [HostHead(r[0], r[1], r[2], _schedulable(r[3], r[4])) for r in rows]


#: one decoder per process: addresses, tags and netdev lists parsed once across host loads
_DECODER = DeviceDecoder()


def read_placements(session: Session, host_id: str | None = None) -> dict[str, list[Placement]]:
    """Placements of live instances, by host id (one host, or every host)."""
    query = select(InstanceRow.host_id, InstanceRow.id, InstanceRow.placement).where(
        InstanceRow.state.in_(LIVE_STATES), InstanceRow.host_id.is_not(None)
    )
    if host_id is not None:
        query = query.where(InstanceRow.host_id == host_id)
    found: dict[str, list[Placement]] = {}
    for host, instance_id, raw in session.execute(query):
        if raw:
            found.setdefault(host, []).append(placement_from_json(instance_id, raw))
    for host, instance_id, raw in session.execute(_migrating(host_id)):
        found.setdefault(host, []).append(placement_from_json(instance_id, raw))
    return found


def _migrating(host_id: str | None) -> Select[tuple[str, str, Any]]:
    """Destination placements of live migrations in flight (the guest holds both hosts)."""
    query = select(MigrationRow.dest_host_id, MigrationRow.instance_id, MigrationRow.placement)
    query = query.where(MigrationRow.state == MIGRATING, MigrationRow.dest_host_id.is_not(None))
    if host_id is not None:
        query = query.where(MigrationRow.dest_host_id == host_id)
    return query


def load_host(session: Session, head: HostHead) -> LoadedHost:
    """One host, whole, as of this transaction."""
    cells_raw, ratio = session.execute(
        select(HostRow.cells, HostRow.cpu_allocation_ratio).where(HostRow.id == head.id)
    ).one()
    rows = session.execute(select(*DEVICE_COLUMNS).where(DeviceRow.host_id == head.id))
    devices = [_DECODER.device(row) for row in rows]
    view = HostState.build(
        head.name,
        cells_from_json(cells_raw),
        devices,
        placements=read_placements(session, head.id).get(head.id, ()),
        cpu_allocation_ratio=ratio,
    )
    return LoadedHost(head, view)


def load_fleet(session: Session) -> Iterator[LoadedHost]:
    """Every host, for the index at start; identical guest-free hosts share one view."""
    placements = read_placements(session)
    shared: dict[tuple[object, ...], HostState] = {}
    for fleet_host in iter_fleet(session):
        record = fleet_host.host
        head = HostHead(
            record.id,
            record.name,
            record.generation,
            record.schedulable,
        )
        mine = placements.get(record.id, ())
        view = _view(
            record.name, record.cells, record.cpu_allocation_ratio, fleet_host.devices, mine, shared
        )
        yield LoadedHost(head, view)


def _view(
    name: str,
    cells: tuple[NumaCell, ...],
    ratio: float,
    devices: tuple[Device, ...],
    placements: Sequence[Placement],
    shared: dict[tuple[object, ...], HostState],
) -> HostState:
    if placements:
        return HostState.build(
            name, cells, devices, placements=placements, cpu_allocation_ratio=ratio
        )
    # devices of identical rows are one shared object (the fleet loader interns them)
    key = (tuple(map(id, devices)), cells, ratio)
    prototype = shared.get(key)
    if prototype is None:
        prototype = shared[key] = HostState.build(name, cells, devices, cpu_allocation_ratio=ratio)
    return prototype if prototype.name == name else replace(prototype, name=name)


def heads_by_id(heads: Sequence[HostHead]) -> Mapping[str, HostHead]:
    return {head.id: head for head in heads}
