"""Row <-> domain conversion and the host generation compare-and-swap.

Every write that depends on a host's devices (an inventory report, a claim, a free, an
operator reserve) reads ``hosts.generation`` and ends with :func:`bump_generation`: the
``UPDATE ... WHERE generation = <read>`` only succeeds for the first writer, so two writers
that read the same state can never both commit (Placement's resource provider generation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from pcifleet.control.db.models import Base, DeviceRow, HostRow
from pcifleet.control.db.records import HostRecord, HostState, StoredDevice
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.errors import ConcurrentUpdate, NotFound
from pcifleet.domain.numa import HugePages, NumaCell
from pcifleet.domain.tags import EMPTY_TAGS, Tags

#: the device columns that come from discovery and specs (what a report may change)
FACT_COLUMNS = (
    "vendor_id",
    "product_id",
    "dev_type",
    "class_code",
    "numa_node",
    "parent_address",
    "vf_index",
    "driver",
    "netdevs",
    "tags",
    "resource_class",
)


# --- generations -------------------------------------------------------------------------


def bump_generation(session: Session, host_id: str, expected: int) -> int:
    """Advance the host's generation from ``expected``; ConcurrentUpdate when it moved on.

    Returns the new generation. Runs in the caller's transaction: on conflict the caller
    rolls back everything it wrote with it. Call it *before* writing the devices: the UPDATE
    takes the host row lock, so every writer locks the host first and then its devices (one
    lock order: no deadlocks on PostgreSQL), and a loser fails before doing any work.
    """
    result = session.execute(
        update(HostRow)
        .where(HostRow.id == host_id, HostRow.generation == expected)
        .values(generation=HostRow.generation + 1)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise ConcurrentUpdate(
            f"host {host_id} changed since generation {expected} was read; re-read and retry",
            host_id=host_id,
            expected=expected,
        )
    return expected + 1


_HOST_TABLE = Base.metadata.tables["hosts"]
_TARGET = _HOST_TABLE.alias("target")
#: the host row, locked, if it is at the expected generation and up; a row another transaction
#: holds is skipped (PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite transactions are exclusive)
_FREE_HOST = (
    select(_TARGET.c.id)
    .where(
        _TARGET.c.id == bindparam("b_id"),
        _TARGET.c.generation == bindparam("b_generation"),
        _TARGET.c.state == HostState.UP.value,
        _TARGET.c.disabled.is_(False),
    )
    .with_for_update(skip_locked=True)
    .scalar_subquery()
)
_BUMP_FREE = (
    update(_HOST_TABLE)
    .where(_HOST_TABLE.c.id == _FREE_HOST)
    .values(generation=_HOST_TABLE.c.generation + 1)
)


#: the same, waiting for a transaction that holds the row (then checking its new version)
_BUMP_WAIT = (
    update(_HOST_TABLE)
    .where(
        _HOST_TABLE.c.id == bindparam("b_id"),
        _HOST_TABLE.c.generation == bindparam("b_generation"),
        _HOST_TABLE.c.state == HostState.UP.value,
        _HOST_TABLE.c.disabled.is_(False),
    )
    .values(generation=_HOST_TABLE.c.generation + 1)
)


def try_bump_generation(
    session: Session, host_id: str, expected: int, *, wait: bool = False
) -> int | None:
    """:func:`bump_generation` for a scheduler trying candidates: returns None, never raises.

    Advances the generation only if the host is still at ``expected``, up and enabled;
    returns the new generation, or None. Without ``wait`` a host row that another
    transaction holds is skipped at once (the caller moves on to another host instead of
    queueing behind a concurrent claim on this one); with ``wait`` the update waits for that
    transaction and then fails if it moved the generation. One statement either way: the
    host row lock is still the first lock the claim takes.
    """
    statement = _BUMP_WAIT if wait else _BUMP_FREE
    result = session.connection().execute(statement, {"b_id": host_id, "b_generation": expected})
    return expected + 1 if result.rowcount == 1 else None


# --- hosts -------------------------------------------------------------------------------


def cells_to_json(cells: Iterable[NumaCell]) -> list[dict[str, Any]]:
    return [
        {
            "id": cell.id,
            "socket": cell.socket,
            "cpus": sorted(cell.cpus),
            "memory_mb": cell.memory_mb,
            "hugepages": [
                {"size_kb": page.size_kb, "total": page.total, "free": page.free}
                for page in cell.hugepages
            ],
        }
        for cell in sorted(cells, key=lambda cell: cell.id)
    ]


def cells_from_json(raw: Sequence[Mapping[str, Any]]) -> tuple[NumaCell, ...]:
    return tuple(
        NumaCell(
            id=int(cell["id"]),
            socket=None if cell.get("socket") is None else int(cell["socket"]),
            cpus=frozenset(int(cpu) for cpu in cell.get("cpus", ())),
            memory_mb=int(cell.get("memory_mb", 0)),
            hugepages=tuple(
                HugePages(int(page["size_kb"]), int(page["total"]), int(page["free"]))
                for page in cell.get("hugepages", ())
            ),
        )
        for cell in raw
    )


def host_record(row: HostRow) -> HostRecord:
    return HostRecord(
        id=row.id,
        name=row.name,
        generation=row.generation,
        inventory_generation=row.inventory_generation,
        state=HostState(row.state),
        disabled=row.disabled,
        disabled_reason=row.disabled_reason,
        last_heartbeat=row.last_heartbeat,
        last_report=row.last_report,
        cells=cells_from_json(row.cells),
        cpu_allocation_ratio=row.cpu_allocation_ratio,
        physnets={str(key): str(value) for key, value in row.physnets.items()},
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def find_host(session: Session, ref: str, *, lock: bool = False) -> HostRow:
    """The host with id ``ref``, else with name ``ref``; NotFound otherwise.

    ``lock`` takes the row lock (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions
    are already exclusive): a long writer such as an inventory report then cannot be starved
    by many short compare-and-swap writers, which wait for it instead and retry cheaply.
    """
    query = select(HostRow).where(HostRow.id == ref)
    if lock:
        query = query.with_for_update()
    row = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if row is None:
        by_name = select(HostRow).where(HostRow.name == ref)
        if lock:
            by_name = by_name.with_for_update()
        row = session.scalars(by_name.execution_options(populate_existing=True)).one_or_none()
    if row is None:
        raise NotFound(f"host {ref!r} not found", field="host", rule="exists")
    return row


# --- devices -----------------------------------------------------------------------------


def device_facts(device: Device) -> dict[str, Any]:
    """The fact columns of ``device`` (what a report stores), as column values."""
    return {
        "vendor_id": device.vendor_id,
        "product_id": device.product_id,
        "dev_type": device.dev_type.value,
        "class_code": device.class_code,
        "numa_node": device.numa_node,
        "parent_address": None if device.parent is None else str(device.parent),
        "vf_index": device.vf_index,
        "driver": device.driver,
        "netdevs": list(device.netdevs),
        "tags": dict(device.tags),
        "resource_class": device.tags.get("resource_class"),
    }


def row_facts(row: DeviceRow) -> dict[str, Any]:
    return {column: getattr(row, column) for column in FACT_COLUMNS}


def device_from_row(row: DeviceRow) -> Device:
    return Device(
        address=PciAddress.parse(row.address),
        vendor_id=row.vendor_id,
        product_id=row.product_id,
        dev_type=DeviceType(row.dev_type),
        class_code=row.class_code,
        numa_node=row.numa_node,
        parent=None if row.parent_address is None else PciAddress.parse(row.parent_address),
        vf_index=row.vf_index,
        driver=row.driver,
        netdevs=tuple(row.netdevs),
        tags=Tags(row.tags) if row.tags else EMPTY_TAGS,
        state=DeviceState(row.state),
        owner=row.instance_id,
    )


def stored_device(row: DeviceRow) -> StoredDevice:
    return StoredDevice(
        id=row.id,
        host_id=row.host_id,
        device=device_from_row(row),
        request_id=row.request_id,
        resource_class=row.resource_class,
        vanished=row.vanished,
        vanished_at=row.vanished_at,
        label=row.label,
    )


def host_device_rows(session: Session, host_id: str) -> list[DeviceRow]:
    """Every device row of one host, in address order (one query)."""
    return list(
        session.scalars(
            select(DeviceRow).where(DeviceRow.host_id == host_id).order_by(DeviceRow.address)
        )
    )


def load_host_devices(session: Session, host_id: str) -> tuple[StoredDevice, ...]:
    return tuple(stored_device(row) for row in host_device_rows(session, host_id))


def drop_released_vanished(session: Session, host_id: str) -> int:
    """Delete the host's vanished devices that nobody holds any more; returns how many.

    A device the host stopped reporting while an instance held it is kept (flagged) until it
    is freed; the code that frees devices calls this in the same transaction, so a device
    that is gone from the host never becomes available to the scheduler.
    """
    result = session.execute(
        delete(DeviceRow)
        .where(
            DeviceRow.host_id == host_id,
            DeviceRow.vanished.is_(True),
            DeviceRow.instance_id.is_(None),
            DeviceRow.state.not_in([DeviceState.CLAIMED.value, DeviceState.ALLOCATED.value]),
        )
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    return result.rowcount
