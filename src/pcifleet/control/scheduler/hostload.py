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

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Final

from sqlalchemy import Select, Text, bindparam, cast, select
from sqlalchemy.orm import Session

from pcifleet.control.db.fleet import iter_fleet
from pcifleet.control.db.models import Base, DeviceRow, HostRow, InstanceRow, MigrationRow
from pcifleet.control.db.records import HostState as Liveness
from pcifleet.control.db.repo import cells_from_json
from pcifleet.control.scheduler.codec import LIVE_STATES, placement_from_json
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.hoststate import HostState
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.placement import Placement
from pcifleet.domain.tags import EMPTY_TAGS, Tags

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
#: built once: Core statements skip the ORM's per-call compilation (a claim runs it per host)
_HEAD = select(
    _HOSTS.c.id, _HOSTS.c.name, _HOSTS.c.generation, _HOSTS.c.state, _HOSTS.c.disabled
).where(_HOSTS.c.id == bindparam("host_id"))


def read_head(session: Session, host_id: str) -> HostHead | None:
    row = session.connection().execute(_HEAD, {"host_id": host_id}).one_or_none()
    if row is None:
        return None
    return HostHead(row[0], row[1], row[2], _schedulable(row[3], row[4]))


def read_heads(session: Session) -> list[HostHead]:
    """Every host's head (the index's catch-up query: a few columns per host)."""
    rows = session.execute(
        select(HostRow.id, HostRow.name, HostRow.generation, HostRow.state, HostRow.disabled)
    )
    return [HostHead(r[0], r[1], r[2], _schedulable(r[3], r[4])) for r in rows]


_DEVICE_COLUMNS = (
    DeviceRow.address,
    DeviceRow.vendor_id,
    DeviceRow.product_id,
    DeviceRow.dev_type,
    DeviceRow.class_code,
    DeviceRow.numa_node,
    DeviceRow.parent_address,
    DeviceRow.vf_index,
    DeviceRow.driver,
    cast(DeviceRow.netdevs, Text),
    cast(DeviceRow.tags, Text),
    DeviceRow.state,
    DeviceRow.instance_id,
)


@lru_cache(maxsize=65_536)
def _address(text: str) -> PciAddress:
    return PciAddress.parse(text)


@lru_cache(maxsize=4096)
def _tags(text: str | None) -> Tags:
    raw = json.loads(text) if text else None
    return Tags({str(k): str(v) for k, v in raw.items()}) if raw else EMPTY_TAGS


@lru_cache(maxsize=4096)
def _netdevs(text: str | None) -> tuple[str, ...]:
    raw = json.loads(text) if text else None
    return tuple(str(name) for name in raw) if raw else ()


def _device(row: Sequence[Any]) -> Device:
    return Device(
        address=_address(row[0]),
        vendor_id=row[1],
        product_id=row[2],
        dev_type=DeviceType(row[3]),
        class_code=row[4],
        numa_node=row[5],
        parent=None if row[6] is None else _address(row[6]),
        vf_index=row[7],
        driver=row[8],
        netdevs=_netdevs(row[9]),
        tags=_tags(row[10]),
        state=DeviceState(row[11]),
        owner=row[12],
    )


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
    devices = [
        _device(row)
        for row in session.execute(select(*_DEVICE_COLUMNS).where(DeviceRow.host_id == head.id))
    ]
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
