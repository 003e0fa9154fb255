"""Bulk loading of the whole fleet, for building the scheduler's in-memory index at startup.

5,000 hosts of 278 devices are 1.4 million rows, so this path avoids the ORM: one Core select
of plain tuples streamed in batches, ordered by host, turned into domain records host by host.
Values that repeat across the fleet (addresses, parent addresses, tags, netdev lists, vendor
ids) are parsed once and shared, and so are whole device records: hosts built from the same hardware
have identical rows apart from the host id, and a frozen :class:`Device` can be shared by
all of them. This keeps both time and memory down. JSON columns are read
as text and decoded only the first time a given text is seen.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from pcifleet.control.db.models import DeviceRow, HostRow
from pcifleet.control.db.records import HostRecord
from pcifleet.control.db.repo import host_record
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.tags import EMPTY_TAGS, Tags

DEFAULT_BATCH = 20_000

_FLEET_COLUMNS = (
    DeviceRow.host_id,
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


@dataclass(frozen=True, slots=True)
class FleetHost:
    """One host and all its devices (in address order); devices are keyed by address."""

    host: HostRecord
    devices: tuple[Device, ...]


@dataclass(slots=True)
class _Interner:
    """Caches that make equal values one object across the whole fleet."""

    addresses: dict[str, PciAddress] = field(default_factory=dict)
    #: whole devices by their row (minus the host): identical hardware shares one record
    devices: dict[tuple[Any, ...], Device] = field(default_factory=dict)
    tags: dict[str | None, Tags] = field(default_factory=dict)
    netdevs: dict[str | None, tuple[str, ...]] = field(default_factory=dict)

    def address(self, text: str) -> PciAddress:
        found = self.addresses.get(text)
        if found is None:
            found = self.addresses[text] = PciAddress.parse(text)
        return found

    def tag_map(self, text: str | None) -> Tags:
        found = self.tags.get(text)
        if found is None:
            raw = json.loads(text) if text else None
            found = Tags({str(k): str(v) for k, v in raw.items()}) if raw else EMPTY_TAGS
            self.tags[text] = found
        return found

    def netdev_list(self, text: str | None) -> tuple[str, ...]:
        found = self.netdevs.get(text)
        if found is None:
            raw = json.loads(text) if text else None
            found = tuple(sys.intern(str(name)) for name in raw) if raw else ()
            self.netdevs[text] = found
        return found


def _device(row: Sequence[Any], interner: _Interner) -> Device:
    """The (shared) device of a fleet row; devices are frozen, so sharing is safe."""
    key = tuple(row[1:])
    found = interner.devices.get(key)
    if found is None:
        found = interner.devices[key] = _new_device(row, interner)
    return found


def _new_device(row: Sequence[Any], interner: _Interner) -> Device:
    parent = row[7]
    return Device(
        address=interner.address(row[1]),
        vendor_id=sys.intern(row[2]),
        product_id=sys.intern(row[3]),
        dev_type=DeviceType(row[4]),
        class_code=None if row[5] is None else sys.intern(row[5]),
        numa_node=row[6],
        parent=None if parent is None else interner.address(parent),
        vf_index=row[8],
        driver=None if row[9] is None else sys.intern(row[9]),
        netdevs=interner.netdev_list(row[10]),
        tags=interner.tag_map(row[11]),
        state=DeviceState(row[12]),
        owner=row[13],
    )


def iter_fleet(session: Session, *, batch_size: int = DEFAULT_BATCH) -> Iterator[FleetHost]:
    """Every host with its devices, host by host (ordered by host id), streaming the rows.

    Memory stays bounded by one batch plus what the caller keeps; a caller that builds pools
    and drops the devices never holds the whole fleet.
    """
    hosts = [host_record(row) for row in session.scalars(select(HostRow).order_by(HostRow.id))]
    statement = (
        select(*_FLEET_COLUMNS)
        .order_by(DeviceRow.host_id, DeviceRow.address)
        .execution_options(stream_results=True, yield_per=batch_size)
    )
    interner = _Interner()
    rows = session.connection().execute(statement)
    grouped = groupby(rows, key=itemgetter(0))
    pending = next(grouped, None)
    for host in hosts:
        devices: Sequence[Device] = ()
        if pending is not None and pending[0] == host.id:
            devices = tuple(_device(row, interner) for row in pending[1])
            pending = next(grouped, None)
        yield FleetHost(host, tuple(devices))
