"""Invariant checks over the controller database: what ``pcifleet audit`` reports.

The scheduler promises (DESIGN §5) that no device is ever handed out twice, whatever the
number of controller processes. The audit checks that promise where it matters, in the rows,
independently of the code that wrote them:

- every held device (claimed/allocated) names an instance that exists, is live, runs on the
  device's host and lists the device in its placement; a free device names nobody;
- no device is listed by two live instances (two consumers);
- the PF/VF coupling holds: a PF and one of its VFs are never both in use, and every device
  nobody holds is in the state the domain's state machine derives from its relatives
  (:func:`pcifleet.domain.state.derived_state`: a VF of a used PF is blocked, a PF with a used
  VF is blocked, and neither stays blocked once its relatives are free);
- every live instance runs on an existing host and holds every device its placement lists;
- per host and pool (vendor:product, type, physical network) the devices in use by the rows
  and by the placements agree;
- a guest in the middle of a live migration holds devices on its destination host too (the
  migration row's placement): those count as its devices there; destination devices still
  held for a migration that is no longer in flight (completed elsewhere, aborted) are a
  violation of their own;
- generations are sane: never negative, and a host with devices in use has moved past 0
  (every claim bumps it with its compare-and-swap).

The checks are pure functions over small typed facts (:class:`HostFacts`,
:class:`DeviceFacts`, :class:`InstanceFacts`); :func:`audit_database` reads the facts in one
consistent snapshot (REPEATABLE READ on PostgreSQL) host by host, so it may run next to a
busy controller without false alarms.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pcifleet.control.db.models import DeviceRow, HostRow, InstanceRow, MigrationRow
from pcifleet.control.scheduler.codec import LIVE_STATES
from pcifleet.control.scheduler.hostload import MIGRATING
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.state import FOLLOWING, HELD, Family, derived_state


class Code(enum.StrEnum):
    """The kinds of violation; stable, so scripts can branch on them."""

    HELD_WITHOUT_INSTANCE = "device.held_without_instance"
    OWNER_MISSING = "device.owner_missing"
    OWNER_NOT_LIVE = "device.owner_not_live"
    OWNER_ON_OTHER_HOST = "device.owner_on_other_host"
    OWNER_ON_FREE_DEVICE = "device.owner_on_free_device"
    NOT_IN_PLACEMENT = "device.not_in_placement"
    HELD_FOR_CLOSED_MIGRATION = "device.held_for_closed_migration"
    VANISHED_NOT_HELD = "device.vanished_not_held"
    TWO_CONSUMERS = "device.two_consumers"
    PF_AND_VF_IN_USE = "family.pf_and_vf_in_use"
    COUPLING = "family.coupling"
    INSTANCE_HOST_MISSING = "instance.host_missing"
    INSTANCE_DEVICE_MISSING = "instance.device_missing"
    INSTANCE_DEVICE_NOT_HELD = "instance.device_not_held"
    POOL_COUNT = "pool.count"
    GENERATION = "host.generation"


@dataclass(frozen=True, slots=True)
class Violation:
    code: Code
    #: the host's name (None for an instance without a host)
    host: str | None
    #: what is wrong: a device address, an instance id or a pool
    subject: str
    message: str


@dataclass(frozen=True, slots=True)
class HostFacts:
    id: str
    name: str
    generation: int
    inventory_generation: int


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    address: PciAddress
    dev_type: DeviceType
    parent: PciAddress | None
    state: DeviceState
    instance_id: str | None
    vanished: bool
    #: the pool the device counts in ("8086:154c type-VF physnet1")
    pool: str

    @property
    def held(self) -> bool:
        return self.state in HELD


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    id: str
    name: str
    host_id: str | None
    state: str
    #: every device address the placement lists (all requests, in order)
    devices: tuple[PciAddress, ...]

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


@dataclass(frozen=True, slots=True)
class MigrationFacts:
    """A live migration as the audit of its destination host needs it."""

    id: str
    instance_id: str
    dest_host_id: str | None
    state: str
    #: the devices claimed on the destination (the migration's placement)
    devices: tuple[PciAddress, ...]

    @property
    def in_flight(self) -> bool:
        return self.state == MIGRATING


@dataclass(frozen=True, slots=True)
class AuditReport:
    hosts: int
    devices: int
    instances: int
    #: devices claimed or allocated
    held: int
    violations: tuple[Violation, ...]

    @property
    def clean(self) -> bool:
        return not self.violations


# --- the checks (pure) -------------------------------------------------------------------------


def audit_host(
    host: HostFacts,
    devices: Sequence[DeviceFacts],
    instances: Mapping[str, InstanceFacts],
    on_host: Sequence[InstanceFacts] | None = None,
    migrations: Sequence[MigrationFacts] = (),
) -> list[Violation]:
    """Every violation on one host.

    ``instances`` are all instances by id (a device may name any); ``on_host`` the live ones
    placed on this host (found in ``instances`` when not given); ``migrations`` those whose
    destination is this host (a guest migrating here holds its destination devices).
    """
    if on_host is None:
        on_host = [i for i in instances.values() if i.host_id == host.id and i.live]
    arriving = _arriving(host, instances, migrations)
    if arriving:
        instances = {**instances, **arriving}
        on_host = [*on_host, *(i for i in arriving.values() if i.live)]
    leftovers = {(m.instance_id, a): m for m in migrations if not m.in_flight for a in m.devices}
    by_address = {d.address: d for d in devices}
    found = [v for d in devices for v in _device_checks(host, d, instances, leftovers)]
    found += _family_checks(host, by_address)
    found += _placement_checks(host, by_address, on_host)
    found += _pool_checks(host, by_address, on_host)
    found += _generation_checks(host, devices)
    return found


def _arriving(
    host: HostFacts, instances: Mapping[str, InstanceFacts], migrations: Sequence[MigrationFacts]
) -> dict[str, InstanceFacts]:
    """Guests migrating to this host, as if placed here with their destination devices."""
    return {
        m.instance_id: replace(instances[m.instance_id], host_id=host.id, devices=m.devices)
        for m in migrations
        if m.in_flight and m.dest_host_id == host.id and m.instance_id in instances
    }


def _owner_problem(
    host: HostFacts, device: DeviceFacts, owner: InstanceFacts | None
) -> tuple[Code, str] | None:
    what = f"device {device.address} is {device.state}"
    if device.instance_id is None:
        return Code.HELD_WITHOUT_INSTANCE, f"{what} but names no instance"
    if owner is None:
        return Code.OWNER_MISSING, f"{what} by instance {device.instance_id}, which does not exist"
    if not owner.live:
        return Code.OWNER_NOT_LIVE, f"{what} by instance {owner.id}, which is {owner.state}"
    if owner.host_id != host.id:
        return Code.OWNER_ON_OTHER_HOST, f"{what} by instance {owner.id}, placed on another host"
    if device.address not in owner.devices:
        return Code.NOT_IN_PLACEMENT, (
            f"{what} by instance {owner.id}, whose placement does not list it"
        )
    return None


def _device_checks(
    host: HostFacts,
    device: DeviceFacts,
    instances: Mapping[str, InstanceFacts],
    leftovers: Mapping[tuple[str, PciAddress], MigrationFacts],
) -> Iterator[Violation]:
    subject = str(device.address)
    if not device.held:
        if device.instance_id is not None:
            yield Violation(
                Code.OWNER_ON_FREE_DEVICE,
                host.name,
                subject,
                f"device {subject} is {device.state} but names instance {device.instance_id}",
            )
        if device.vanished:
            yield Violation(
                Code.VANISHED_NOT_HELD,
                host.name,
                subject,
                f"device {subject} vanished from the host and nobody holds it, yet it is kept",
            )
        return
    owner = instances.get(device.instance_id) if device.instance_id else None
    problem = _owner_problem(host, device, owner)
    closed = leftovers.get((device.instance_id or "", device.address))
    if problem is not None and closed is not None:
        problem = (
            Code.HELD_FOR_CLOSED_MIGRATION,
            (
                f"device {subject} is {device.state} by instance {closed.instance_id} for "
                f"migration {closed.id}, which is {closed.state}, no longer in flight"
            ),
        )
    if problem is not None:
        yield Violation(problem[0], host.name, subject, problem[1])


def _domain_device(device: DeviceFacts) -> Device:
    """Just enough of a domain device for the state machine's coupling rule."""
    return Device(
        device.address,
        "",
        "",
        device.dev_type,
        parent=device.parent,
        state=device.state,
        owner=device.instance_id,
    )


def _families(by_address: Mapping[PciAddress, DeviceFacts]) -> Iterator[Family]:
    """Each PF with its tracked VF-like children (lone devices need no coupling check)."""
    children: dict[PciAddress, list[Device]] = {}
    for device in by_address.values():
        is_child = device.dev_type in (DeviceType.VF, DeviceType.VDPA)
        if is_child and device.parent is not None and device.parent in by_address:
            children.setdefault(device.parent, []).append(_domain_device(device))
    for pf, vfs in children.items():
        head = by_address[pf]
        if head.dev_type is DeviceType.PF:
            yield Family(_domain_device(head), tuple(sorted(vfs, key=lambda d: d.address)))


def _family_checks(
    host: HostFacts, by_address: Mapping[PciAddress, DeviceFacts]
) -> Iterator[Violation]:
    for family in _families(by_address):
        head = family.head
        assert head is not None
        used_vfs = [vf for vf in family.children if vf.state in HELD]
        if head.state in HELD and used_vfs:
            yield Violation(
                Code.PF_AND_VF_IN_USE,
                host.name,
                str(head.address),
                f"PF {head.address} is {head.state} while its VF {used_vfs[0].address} is "
                f"{used_vfs[0].state} ({len(used_vfs)} VFs in use)",
            )
        yield from _coupling(host, family)


def _coupling(host: HostFacts, family: Family) -> Iterator[Violation]:
    """Devices nobody holds must be in the state their relatives imply."""
    for device in family.members:
        if device.state not in FOLLOWING:
            continue
        expected = derived_state(device, family)
        if expected is not device.state:
            kind = "PF" if device.is_pf else "VF"
            yield Violation(
                Code.COUPLING,
                host.name,
                str(device.address),
                f"{kind} {device.address} is {device.state} but its relatives make it {expected}",
            )


def _placement_checks(
    host: HostFacts,
    by_address: Mapping[PciAddress, DeviceFacts],
    on_host: Sequence[InstanceFacts],
) -> Iterator[Violation]:
    consumers: dict[PciAddress, list[str]] = {}
    for instance in on_host:
        for address in instance.devices:
            consumers.setdefault(address, []).append(instance.id)
            yield from _instance_device(host, by_address.get(address), address, instance)
    for address, ids in consumers.items():
        if len(ids) > 1:
            yield Violation(
                Code.TWO_CONSUMERS,
                host.name,
                str(address),
                f"device {address} is listed by {len(ids)} live instances: {', '.join(ids)}",
            )


def _instance_device(
    host: HostFacts, device: DeviceFacts | None, address: PciAddress, instance: InstanceFacts
) -> Iterator[Violation]:
    if device is None:
        yield Violation(
            Code.INSTANCE_DEVICE_MISSING,
            host.name,
            instance.id,
            f"instance {instance.id} ({instance.state}) lists device {address}, which host "
            f"{host.name} does not have",
        )
    elif not device.held or device.instance_id != instance.id:
        holder = device.instance_id or "nobody"
        yield Violation(
            Code.INSTANCE_DEVICE_NOT_HELD,
            host.name,
            instance.id,
            f"instance {instance.id} ({instance.state}) lists device {address}, which is "
            f"{device.state} and held by {holder}",
        )


def _pool_checks(
    host: HostFacts,
    by_address: Mapping[PciAddress, DeviceFacts],
    on_host: Sequence[InstanceFacts],
) -> Iterator[Violation]:
    """Devices in use per pool: the rows' count against the placements' count."""
    rows = Counter(d.pool for d in by_address.values() if d.held)
    placed = Counter(by_address[a].pool for i in on_host for a in set(i.devices) if a in by_address)
    for pool in sorted(set(rows) | set(placed)):
        if rows[pool] != placed[pool]:
            yield Violation(
                Code.POOL_COUNT,
                host.name,
                pool,
                f"pool {pool}: {rows[pool]} devices in use by the device rows, "
                f"{placed[pool]} by the placements of live instances",
            )


def _generation_checks(host: HostFacts, devices: Sequence[DeviceFacts]) -> Iterator[Violation]:
    for name, value in (
        ("generation", host.generation),
        ("inventory_generation", host.inventory_generation),
    ):
        if value < 0:
            yield Violation(
                Code.GENERATION, host.name, name, f"host {host.name}: {name} is {value} (< 0)"
            )
    held = sum(1 for d in devices if d.held)
    if held and host.generation <= 0:
        yield Violation(
            Code.GENERATION,
            host.name,
            "generation",
            f"host {host.name}: {held} devices in use but generation {host.generation}: a "
            "claim was written without its compare-and-swap",
        )


def audit_instances(
    instances: Iterable[InstanceFacts], host_ids: Iterable[str]
) -> Iterator[Violation]:
    """Live instances that run nowhere: no host, or a host that is gone."""
    known = set(host_ids)
    for instance in instances:
        if instance.live and (instance.host_id is None or instance.host_id not in known):
            where = "no host" if instance.host_id is None else f"host {instance.host_id}, gone"
            yield Violation(
                Code.INSTANCE_HOST_MISSING,
                None,
                instance.id,
                f"instance {instance.id} is {instance.state} on {where}",
            )


# --- reading the facts ---------------------------------------------------------------------


def pool_label(vendor_id: str, product_id: str, dev_type: str, tags: Mapping[str, Any]) -> str:
    physnet = tags.get("physical_network") if tags else None
    label = f"{vendor_id}:{product_id} {dev_type}"
    return f"{label} {physnet}" if physnet else label


def _placement_devices(raw: Mapping[str, Any] | None) -> tuple[PciAddress, ...]:
    if not raw:
        return ()
    return tuple(PciAddress.parse(a) for group in raw.get("devices", ()) for a in group)


def read_instances(session: Session) -> dict[str, InstanceFacts]:
    rows = session.execute(
        select(
            InstanceRow.id,
            InstanceRow.name,
            InstanceRow.host_id,
            InstanceRow.state,
            InstanceRow.placement,
        )
    )
    return {r[0]: InstanceFacts(r[0], r[1], r[2], r[3], _placement_devices(r[4])) for r in rows}


def read_migrations(session: Session) -> dict[str, list[MigrationFacts]]:
    """Migrations by destination host id (closed ones too: their leftovers are violations)."""
    rows = session.execute(
        select(
            MigrationRow.id,
            MigrationRow.instance_id,
            MigrationRow.dest_host_id,
            MigrationRow.state,
            MigrationRow.placement,
        ).where(MigrationRow.dest_host_id.is_not(None))
    )
    found: dict[str, list[MigrationFacts]] = {}
    for r in rows:
        facts = MigrationFacts(r[0], r[1], r[2], r[3], _placement_devices(r[4]))
        found.setdefault(r[2], []).append(facts)
    return found


def read_hosts(session: Session) -> list[HostFacts]:
    rows = session.execute(
        select(HostRow.id, HostRow.name, HostRow.generation, HostRow.inventory_generation).order_by(
            HostRow.id
        )
    )
    return [HostFacts(r[0], r[1], r[2], r[3]) for r in rows]


_DEVICE_COLUMNS = (
    DeviceRow.host_id,
    DeviceRow.address,
    DeviceRow.dev_type,
    DeviceRow.parent_address,
    DeviceRow.state,
    DeviceRow.instance_id,
    DeviceRow.vanished,
    DeviceRow.vendor_id,
    DeviceRow.product_id,
    DeviceRow.tags,
)


def _device_facts(row: Sequence[Any]) -> DeviceFacts:
    return DeviceFacts(
        address=PciAddress.parse(row[1]),
        dev_type=DeviceType(row[2]),
        parent=None if row[3] is None else PciAddress.parse(row[3]),
        state=DeviceState(row[4]),
        instance_id=row[5],
        vanished=bool(row[6]),
        pool=pool_label(row[7], row[8], row[2], row[9] or {}),
    )


def iter_host_devices(session: Session) -> Iterator[tuple[str, list[DeviceFacts]]]:
    """(host id, its devices), host by host, streaming the rows."""
    statement = (
        select(*_DEVICE_COLUMNS)
        .order_by(DeviceRow.host_id, DeviceRow.address)
        .execution_options(stream_results=True, yield_per=20_000)
    )
    for host_id, rows in groupby(session.execute(statement), key=itemgetter(0)):
        yield host_id, [_device_facts(row) for row in rows]


def audit_session(session: Session) -> AuditReport:
    """The audit over what ``session`` sees (call it inside one transaction)."""
    hosts = read_hosts(session)
    instances = read_instances(session)
    migrations = read_migrations(session)
    by_id = {h.id: h for h in hosts}
    violations = list(audit_instances(instances.values(), by_id))
    live: dict[str, list[InstanceFacts]] = {}
    for instance in instances.values():
        if instance.live and instance.host_id is not None:
            live.setdefault(instance.host_id, []).append(instance)
    devices = held = 0
    seen: set[str] = set()
    for host_id, facts in iter_host_devices(session):
        seen.add(host_id)
        devices += len(facts)
        held += sum(1 for d in facts if d.held)
        violations += audit_host(
            by_id[host_id], facts, instances, live.get(host_id, []), migrations.get(host_id, ())
        )
    for host in hosts:
        if host.id not in seen:
            violations += audit_host(
                host, (), instances, live.get(host.id, []), migrations.get(host.id, ())
            )
    return AuditReport(len(hosts), devices, len(instances), held, tuple(violations))


def audit_database(engine: Engine) -> AuditReport:
    """The audit in one consistent snapshot of the database behind ``engine``."""
    options: dict[str, Any] = {}
    if engine.dialect.name == "postgresql":
        options = {"isolation_level": "REPEATABLE READ"}
    with (
        engine.connect().execution_options(**options) as connection,
        Session(bind=connection) as session,
        session.begin(),
    ):
        return audit_session(session)
