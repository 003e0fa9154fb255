"""The database writes of a claim and of a release, derived from the domain's state machine.

The scheduler decides on a :class:`~pcifleet.domain.hoststate.HostState`; ``apply`` and
``release`` (the domain's one transition table, PF/VF coupling included) give the host's next
state. :func:`device_changes` diffs the two over the touched devices and their relatives, and
:func:`write_device_changes` stores the diff with one ``UPDATE`` per kind of change. Each
``UPDATE`` also pins the state it expects to overwrite and checks how many rows it changed:
the host generation compare-and-swap already guarantees that nobody else wrote the host since
it was read, so a mismatch means the stored rows disagree with the view — it is reported as a
concurrent update (the caller rolls back and re-reads) rather than written over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from pcifleet.control.db.models import Base, utcnow
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceState
from pcifleet.domain.errors import ConcurrentUpdate
from pcifleet.domain.hoststate import HostState


@dataclass(frozen=True, slots=True)
class DeviceChange:
    address: PciAddress
    before: DeviceState
    after: DeviceState
    owner: str | None
    request_id: str | None


def touched(view: HostState, addresses: Iterable[PciAddress]) -> list[PciAddress]:
    """``addresses`` with every relative they couple with, each once, in a stable order."""
    seen: dict[PciAddress, None] = {}
    for address in addresses:
        for member in view.family(address).members:
            seen.setdefault(member.address, None)
    return list(seen)


def device_changes(
    before: HostState,
    after: HostState,
    addresses: Iterable[PciAddress],
    request_ids: Mapping[PciAddress, str] | None = None,
) -> list[DeviceChange]:
    """What changed between ``before`` and ``after`` on ``addresses`` and their relatives."""
    ids = request_ids or {}
    changes = []
    for address in touched(before, addresses):
        old = before.devices[address]
        new = after.devices[address]
        if old.state is new.state and old.owner == new.owner:
            continue
        request_id = ids.get(address) if new.owner is not None else None
        changes.append(DeviceChange(address, old.state, new.state, new.owner, request_id))
    return changes


def write_device_changes(session: Session, host_id: str, changes: Iterable[DeviceChange]) -> int:
    """Store ``changes``; ConcurrentUpdate if a row was not in the expected state."""
    groups: dict[tuple[DeviceState, DeviceState, str | None, str | None], list[str]] = {}
    for change in changes:
        key = (change.before, change.after, change.owner, change.request_id)
        groups.setdefault(key, []).append(str(change.address))
    written = 0
    connection = session.connection()
    for (before, after, owner, request_id), addresses in groups.items():
        result = connection.execute(
            _UPDATE,
            {
                "b_host": host_id,
                "b_addresses": addresses,
                "b_before": before.value,
                "b_after": after.value,
                "b_owner": owner,
                "b_request": request_id,
                "b_now": utcnow(),
            },
        )
        if result.rowcount != len(addresses):
            raise ConcurrentUpdate(
                f"host {host_id}: {len(addresses) - result.rowcount} of {len(addresses)} "
                f"devices were no longer {before}; re-read and retry",
                host_id=host_id,
            )
        written += result.rowcount
    return written


_DEVICES = Base.metadata.tables["devices"]
#: built once (Core): the claim path runs it for every boot and delete
_UPDATE = (
    update(_DEVICES)
    .where(
        _DEVICES.c.host_id == bindparam("b_host"),
        _DEVICES.c.address.in_(bindparam("b_addresses", expanding=True)),
        _DEVICES.c.state == bindparam("b_before"),
    )
    .values(
        state=bindparam("b_after"),
        instance_id=bindparam("b_owner"),
        request_id=bindparam("b_request"),
        updated_at=bindparam("b_now"),
    )
)
