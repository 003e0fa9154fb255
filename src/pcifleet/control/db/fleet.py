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
from dataclasses import dataclass
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

#: the columns a device row is decoded from, in :meth:`DeviceDecoder.device`'s order
DEVICE_COLUMNS = (
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
_FLEET_COLUMNS = (DeviceRow.host_id, *DEVICE_COLUMNS)


@dataclass(frozen=True, slots=True)
class FleetHost:
    """One host and all its devices (in address order); devices are keyed by address."""

    host: HostRecord
    devices: tuple[Device, ...]


class DeviceDecoder:
    """Device rows (:data:`DEVICE_COLUMNS`) -> domain records, parsing repeated values once.

    Addresses, tags and netdev lists repeat across hosts, so each distinct text is parsed
    once and the result shared. With ``share_devices`` whole identical rows share one frozen
    :class:`Device` too (the fleet load: identical hardware on many hosts); a long-lived
    per-host loader leaves it off, since rows carry states and owners that never repeat.
    """

    def __init__(self, *, share_devices: bool = False) -> None:
        self._share = share_devices
        self._devices: dict[tuple[Any, ...], Device] = {}
        self._addresses: dict[str, PciAddress] = {}
        self._tags: dict[str | None, Tags] = {}
        self._netdevs: dict[str | None, tuple[str, ...]] = {}

    def device(self, row: Sequence[Any]) -> Device:
        if not self._share:
            return self._new_device(row)
        key = tuple(row)
        found = self._devices.get(key)
        if found is None:
            found = self._devices[key] = self._new_device(row)
        return found

    def _new_device(self, row: Sequence[Any]) -> Device:
        parent = row[6]
        return Device(
            address=self._address(row[0]),
            vendor_id=sys.intern(row[1]),
            product_id=sys.intern(row[2]),
            dev_type=DeviceType(row[3]),
            class_code=None if row[4] is None else sys.intern(row[4]),
            numa_node=row[5],
            parent=None if parent is None else self._address(parent),
            vf_index=row[7],
            driver=None if row[8] is None else sys.intern(row[8]),
            netdevs=self._netdev_list(row[9]),
            tags=self._tag_map(row[10]),
            state=DeviceState(row[11]),
            owner=row[12],
        )

    def _address(self, text: str) -> PciAddress:
        found = self._addresses.get(text)
        if found is None:
            found = self._addresses[text] = PciAddress.parse(text)
        return found

    def _tag_map(self, text: str | None) -> Tags:
        found = self._tags.get(text)
        if found is None:
            raw = json.loads(text) if text else None
            found = Tags({str(k): str(v) for k, v in raw.items()}) if raw else EMPTY_TAGS
            self._tags[text] = found
        return found

    def _netdev_list(self, text: str | None) -> tuple[str, ...]:
        found = self._netdevs.get(text)
        if found is None:
            raw = json.loads(text) if text else None
            found = tuple(sys.intern(str(name)) for name in raw) if raw else ()
            self._netdevs[text] = found
        return found


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
    decoder = DeviceDecoder(share_devices=True)
    rows = session.connection().execute(statement)
    grouped = groupby(rows, key=itemgetter(0))
    pending = next(grouped, None)
    for host in hosts:
        devices: Sequence[Device] = ()
        if pending is not None and pending[0] == host.id:
            devices = tuple(decoder.device(row[1:]) for row in pending[1])
            pending = next(grouped, None)
        yield FleetHost(host, tuple(devices))
