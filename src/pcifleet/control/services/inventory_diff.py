"""The inventory diff: what a host's full report changes in the stored devices.

Pure planning over light snapshots of the stored rows (read with one Core query, JSON columns
decoded once per distinct text), then one bulk write per kind of change. Rules (Nova's
``PciDevTracker`` sync, done centrally):

- a new device is added, available unless a relative in use blocks it (a new VF of a PF that
  is claimed or allocated; a new PF whose VFs are in use or reserved);
- a known device whose facts changed is updated, including its type;
- a device no longer reported is removed, unless an instance holds it: then it is kept and
  flagged ``vanished`` (once), and listed in every report result while it stays missing;
- a flagged device that is reported again is un-flagged.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Text, cast, delete, insert, select, update
from sqlalchemy.orm import Session

from pcifleet.control.db.models import DeviceRow
from pcifleet.control.db.repo import FACT_COLUMNS, device_facts
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceState, DeviceType
from pcifleet.domain.errors import InvalidInput
from pcifleet.domain.state import Family, derived_state

_S = DeviceState
#: states in which an instance holds the device: such a device is never dropped
HELD: Final = frozenset({_S.CLAIMED, _S.ALLOCATED})
_JSON_FACTS: Final = frozenset({"netdevs", "tags"})
_DELETE_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """What the diff needs of one stored device row."""

    id: str
    address: str
    facts: Mapping[str, Any]
    state: str
    instance_id: str | None
    vanished: bool
    label: str | None

    @property
    def held(self) -> bool:
        return self.state in HELD or self.instance_id is not None


@dataclass(slots=True)
class ReportPlan:
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    updated: int = 0
    unchanged: int = 0
    kept_vanished: list[PciAddress] = field(default_factory=list)
    newly_vanished: list[str] = field(default_factory=list)
    reappeared: list[PciAddress] = field(default_factory=list)

    @property
    def changes_devices(self) -> bool:
        return bool(self.inserts or self.updates or self.deletes or self.newly_vanished)


def load_snapshots(session: Session, host_id: str) -> list[DeviceSnapshot]:
    """The stored devices of one host (one query; JSON decoded once per distinct text)."""
    json_columns = [cast(getattr(DeviceRow, name), Text) for name in sorted(_JSON_FACTS)]
    plain = [getattr(DeviceRow, name) for name in FACT_COLUMNS if name not in _JSON_FACTS]
    statement = select(
        DeviceRow.id,
        DeviceRow.address,
        DeviceRow.state,
        DeviceRow.instance_id,
        DeviceRow.vanished,
        DeviceRow.label,
        *json_columns,
        *plain,
    ).where(DeviceRow.host_id == host_id)
    names = [*sorted(_JSON_FACTS), *(n for n in FACT_COLUMNS if n not in _JSON_FACTS)]
    decoded: dict[str | None, Any] = {}
    snapshots = []
    for row in session.execute(statement):
        values = list(row[6:])
        for i in range(len(_JSON_FACTS)):
            values[i] = _decode(values[i], decoded)
        snapshots.append(
            DeviceSnapshot(row[0], row[1], dict(zip(names, values, strict=True)), *row[2:6])
        )
    return snapshots


def _decode(text: str | None, cache: dict[str | None, Any]) -> Any:
    if text not in cache:
        cache[text] = None if text is None else json.loads(text)
    return cache[text]


def check_unique(devices: Sequence[Device]) -> None:
    seen: set[PciAddress] = set()
    for device in devices:
        if device.address in seen:
            raise InvalidInput(
                f"devices: address {device.address} is reported twice",
                field="devices",
                rule="unique",
            )
        seen.add(device.address)


def snapshot_device(snapshot: DeviceSnapshot) -> Device:
    """The domain record of a stored device (for the state machine's relative rules)."""
    facts = snapshot.facts
    parent = facts["parent_address"]
    return Device(
        address=PciAddress.parse(snapshot.address),
        vendor_id=facts["vendor_id"],
        product_id=facts["product_id"],
        dev_type=DeviceType(facts["dev_type"]),
        parent=None if parent is None else PciAddress.parse(parent),
        state=DeviceState(snapshot.state),
        owner=snapshot.instance_id,
    )


def _initial_state(device: Device, stored: Mapping[str, DeviceSnapshot]) -> DeviceState:
    """State of a newly reported device given its stored relatives, by the domain's rule
    (:func:`pcifleet.domain.state.derived_state`): a VF of a PF in use is blocked, and so is
    a PF whose VFs are in use or reserved."""
    if device.is_vf_like and device.parent is not None:
        parent = stored.get(str(device.parent))
        if parent is None:
            return _S.AVAILABLE
        return derived_state(device, Family(snapshot_device(parent), (device,)))
    if device.is_pf:
        address = str(device.address)
        children = tuple(
            snapshot_device(s) for s in stored.values() if s.facts["parent_address"] == address
        )
        return derived_state(device, Family(device, children))
    return _S.AVAILABLE


def plan_report(
    host_id: str,
    stored: Sequence[DeviceSnapshot],
    devices: Sequence[Device],
    labels: Mapping[PciAddress, str],
    now: dt.datetime,
) -> ReportPlan:
    """What to insert, update, delete and flag so the host's rows match ``devices``."""
    by_address = {snapshot.address: snapshot for snapshot in stored}
    plan = ReportPlan()
    reported: set[str] = set()
    for device in devices:
        key = str(device.address)
        reported.add(key)
        snapshot = by_address.get(key)
        label = labels.get(device.address)
        if snapshot is None:
            plan.inserts.append(_new_row(host_id, key, device, label, by_address, now))
        else:
            _plan_known(plan, snapshot, device, label, now)
    for snapshot in stored:
        if snapshot.address not in reported:
            _plan_missing(plan, snapshot)
    plan.kept_vanished.sort()
    plan.reappeared.sort()
    return plan


def _new_row(
    host_id: str,
    address: str,
    device: Device,
    label: str | None,
    stored: Mapping[str, DeviceSnapshot],
    now: dt.datetime,
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "host_id": host_id,
        "address": address,
        **device_facts(device),
        "state": _initial_state(device, stored).value,
        "instance_id": None,
        "request_id": None,
        "vanished": False,
        "vanished_at": None,
        "label": label,
        "updated_at": now,
    }


def _plan_known(
    plan: ReportPlan, stored: DeviceSnapshot, device: Device, label: str | None, now: dt.datetime
) -> None:
    changes: dict[str, Any] = {
        column: value
        for column, value in device_facts(device).items()
        if stored.facts[column] != value
    }
    if label is not None and label != stored.label:
        changes["label"] = label
    if changes:
        plan.updated += 1
    if stored.vanished:
        changes.update(vanished=False, vanished_at=None)
        plan.reappeared.append(device.address)
    if not changes:
        plan.unchanged += 1
        return
    plan.updates.append({"id": stored.id, **changes, "updated_at": now})


def _plan_missing(plan: ReportPlan, stored: DeviceSnapshot) -> None:
    if stored.held:
        plan.kept_vanished.append(PciAddress.parse(stored.address))
        if not stored.vanished:
            plan.newly_vanished.append(stored.id)
        return
    plan.deletes.append(stored.id)


def write_plan(session: Session, plan: ReportPlan, now: dt.datetime) -> None:
    """Apply ``plan`` with bulk statements (Core: no ORM objects for hundreds of rows)."""
    for start in range(0, len(plan.deletes), _DELETE_CHUNK):
        chunk = plan.deletes[start : start + _DELETE_CHUNK]
        session.execute(delete(DeviceRow).where(DeviceRow.id.in_(chunk)))
    if plan.updates:
        session.execute(update(DeviceRow), plan.updates)
    if plan.newly_vanished:
        session.execute(
            update(DeviceRow),
            [{"id": i, "vanished": True, "vanished_at": now} for i in plan.newly_vanished],
        )
    if plan.inserts:
        session.connection().execute(insert(DeviceRow), plan.inserts)
