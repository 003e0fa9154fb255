"""The desired state of one host: its live instances, their ports and the facts of their devices.

An agent reads this every cycle, so it is built with a handful of indexed queries on that
host only (instances by ``host_id`` and state, ports by ``instance_id``, devices by
``host_id`` and address) — never by listing every instance and filtering in Python. The
device facts (type, parent PF, VF index, netdev names, tags) are what the agent needs to find
a port's VF on its PF and to render ``managed`` hostdevs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import DeviceRow, HostRow, InstanceRow, MigrationRow, PortRow
from pcifleet.control.db.repo import find_host
from pcifleet.control.scheduler.codec import LIVE_STATES, placement_from_json
from pcifleet.control.scheduler.hostload import MIGRATING
from pcifleet.control.services.instances import InstanceRecord, _record
from pcifleet.control.services.migrations import plan_from_json
from pcifleet.control.services.networks import PortRecord, _port_record
from pcifleet.domain.migration import MigrationPlan


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What the inventory knows of one device of the host."""

    address: str
    dev_type: str
    parent: str | None
    vf_index: int | None
    netdevs: tuple[str, ...]
    tags: Mapping[str, str]

    @property
    def managed(self) -> bool:
        """Nova's ``managed`` tag; absent means yes."""
        return self.tags.get("managed", "true").strip().lower() == "true"

    @property
    def ifname(self) -> str | None:
        return self.netdevs[0] if self.netdevs else None


@dataclass(frozen=True, slots=True)
class DesiredInstance:
    record: InstanceRecord
    ports: tuple[PortRecord, ...]


@dataclass(frozen=True, slots=True)
class OutgoingMigration:
    """A migration in flight from the host: the instance as placed on the destination, with
    the destination's device facts, and the plan (with the destination devices)."""

    id: str
    destination_host: str
    destination_uri: str | None
    plan: MigrationPlan
    destination: DesiredInstance
    devices: Mapping[str, DeviceFacts]


@dataclass(frozen=True, slots=True)
class DesiredHost:
    host: str
    instances: tuple[DesiredInstance, ...]
    #: the instances' devices and the PFs of their VFs, by address
    devices: Mapping[str, DeviceFacts]
    #: migrations in flight from this host, by instance id (the source agent runs them)
    outgoing: Mapping[str, OutgoingMigration] = field(default_factory=dict)
    #: ids of instances migrating to this host (their domains may appear before completion)
    incoming: tuple[str, ...] = ()


def _facts(row: DeviceRow) -> DeviceFacts:
    return DeviceFacts(
        address=row.address,
        dev_type=row.dev_type,
        parent=row.parent_address,
        vf_index=row.vf_index,
        netdevs=tuple(str(n) for n in row.netdevs or ()),
        tags=MappingProxyType({str(k): str(v) for k, v in (row.tags or {}).items()}),
    )


def _devices(session: Session, host_id: str, addresses: set[str]) -> dict[str, DeviceFacts]:
    if not addresses:
        return {}
    rows = session.scalars(
        select(DeviceRow).where(DeviceRow.host_id == host_id, DeviceRow.address.in_(addresses))
    )
    found = {row.address: _facts(row) for row in rows}
    parents = {f.parent for f in found.values() if f.parent is not None} - set(found)
    if parents:
        rows = session.scalars(
            select(DeviceRow).where(DeviceRow.host_id == host_id, DeviceRow.address.in_(parents))
        )
        found.update((row.address, _facts(row)) for row in rows)
    return found


def _outgoing(
    session: Session, host_id: str, instances: Mapping[str, DesiredInstance]
) -> dict[str, OutgoingMigration]:
    """The migrations in flight from ``host_id`` of the listed instances."""
    if not instances:
        return {}
    rows = session.execute(
        select(MigrationRow, HostRow.name, HostRow.hypervisor_uri)
        .join(HostRow, HostRow.id == MigrationRow.dest_host_id)
        .where(
            MigrationRow.source_host_id == host_id,
            MigrationRow.state == MIGRATING,
            MigrationRow.instance_id.in_(list(instances)),
        )
    ).all()
    found = {}
    for row, dest_name, dest_uri in rows:
        at_source = instances[row.instance_id]
        placement = placement_from_json(row.instance_id, row.placement)
        record = replace(
            at_source.record, host_id=row.dest_host_id, host=dest_name, placement=placement
        )
        addresses = {str(a) for a in placement.all_devices}
        found[row.instance_id] = OutgoingMigration(
            id=row.id,
            destination_host=dest_name,
            destination_uri=dest_uri,
            plan=plan_from_json(row.instance_id, row.plan or {}),
            destination=DesiredInstance(record, at_source.ports),
            devices=MappingProxyType(_devices(session, str(row.dest_host_id), addresses)),
        )
    return found


def _incoming(session: Session, host_id: str) -> tuple[str, ...]:
    return tuple(
        session.scalars(
            select(MigrationRow.instance_id)
            .where(MigrationRow.dest_host_id == host_id, MigrationRow.state == MIGRATING)
            .order_by(MigrationRow.instance_id)
        )
    )


def desired_for_host(sessions: sessionmaker[Session], host: str) -> DesiredHost:
    """The live instances on ``host`` (id or name), oldest first, with ports and devices."""
    with sessions() as session:
        host_row = find_host(session, host)
        rows = session.scalars(
            select(InstanceRow)
            .where(InstanceRow.host_id == host_row.id, InstanceRow.state.in_(LIVE_STATES))
            .order_by(InstanceRow.created_at, InstanceRow.id)
        ).all()
        records = [_record(row, host_row.name) for row in rows]
        ports: dict[str, list[PortRecord]] = {r.id: [] for r in records}
        if ports:
            query = (
                select(PortRow)
                .where(PortRow.instance_id.in_(list(ports)))
                .order_by(PortRow.created_at, PortRow.id)
            )
            for port in session.scalars(query):
                ports[str(port.instance_id)].append(_port_record(port))
        addresses = {
            str(address)
            for record in records
            for chosen in record.devices
            for address in chosen.devices
        }
        devices = _devices(session, host_row.id, addresses)
        instances = tuple(DesiredInstance(r, tuple(ports[r.id])) for r in records)
        outgoing = _outgoing(session, host_row.id, {i.record.id: i for i in instances})
        incoming = _incoming(session, host_row.id)
    return DesiredHost(
        host_row.name, instances, MappingProxyType(devices), MappingProxyType(outgoing), incoming
    )
