"""Catch a cached host view up with other processes' claims and frees, without a reload.

Every claim and free the scheduler commits moves the host's generation by one and stamps the
instance row with that new generation (``instances.host_generation``, :func:`record_event`).
A process that knows a host at generation ``g`` while the database is at ``G`` reads the
instance rows of that host stamped after ``g`` (:func:`read_events`, one query for many hosts)
and replays them on its cached view with the domain's copy-on-write :func:`apply` and
:func:`release` (:func:`advance`) — a few microseconds instead of four queries and a rebuild.

Replaying is exact only when every generation between ``g`` and ``G`` is one of these events:
any other writer (an inventory report, an attached port, a migration, an operator) moves the
generation without stamping an instance, so a gap shows, and the caller reloads the host
whole. A stamp overwritten by a later event of the same guest, a guest whose state no longer
says what its event did, or a replay the state machine refuses, all fall back the same way.

Statements of one transaction may see different commits (READ COMMITTED), so a replay can
include a change made after ``G``; such a view is tagged ``G`` while the database is already
past it, so the compare-and-swap of any claim that uses it fails: a wrong view is never
written on, and the next catch-up sees the gap and reloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from pcifleet.control.db.models import Base
from pcifleet.control.scheduler.codec import LIVE_STATES, InstanceState, placement_from_json
from pcifleet.domain.errors import PcifleetError
from pcifleet.domain.fit import apply, release
from pcifleet.domain.hoststate import HostState

_INSTANCES = Base.metadata.tables["instances"]
_STAMP = (
    update(_INSTANCES)
    .where(_INSTANCES.c.id == bindparam("e_id"))
    # a bookkeeping stamp, not a change of the guest: updated_at keeps its value
    .values(host_generation=bindparam("e_generation"), updated_at=_INSTANCES.c.updated_at)
)
_EVENTS = select(
    _INSTANCES.c.host_id,
    _INSTANCES.c.id,
    _INSTANCES.c.host_generation,
    _INSTANCES.c.state,
    _INSTANCES.c.placement,
).where(
    _INSTANCES.c.host_id.in_(bindparam("e_hosts", expanding=True)),
    _INSTANCES.c.host_generation > bindparam("e_after"),
)
_DELETED: Final = InstanceState.DELETED.value


@dataclass(frozen=True, slots=True)
class Event:
    """One instance row stamped with a host generation: a claim (live) or a free (deleted)."""

    instance_id: str
    generation: int
    state: str
    placement: Mapping[str, Any] | None


def record_event(session: Session, instance_id: str, generation: int) -> None:
    """Stamp the instance the scheduler just claimed or freed with its host's new generation
    (in the claim's or free's transaction, after the compare-and-swap)."""
    session.connection().execute(_STAMP, {"e_id": instance_id, "e_generation": generation})


def read_events(session: Session, known: Mapping[str, int]) -> dict[str, list[Event]]:
    """Events after the known generation of each host in ``known`` (host id -> generation)."""
    if not known:
        return {}
    rows = session.connection().execute(
        _EVENTS, {"e_hosts": list(known), "e_after": min(known.values())}
    )
    found: dict[str, list[Event]] = {}
    for host_id, instance_id, generation, state, placement in rows:
        if generation > known[host_id]:
            found.setdefault(host_id, []).append(Event(instance_id, generation, state, placement))
    return found


def advance(view: HostState, known: int, target: int, events: Iterable[Event]) -> HostState | None:
    """``view`` (the host at generation ``known``) replayed up to ``target``; None when the
    events do not explain every generation in between (the caller reloads the host)."""
    ordered = sorted((e for e in events if e.generation <= target), key=lambda e: e.generation)
    if [e.generation for e in ordered] != list(range(known + 1, target + 1)):
        return None
    try:
        for event in ordered:
            replayed = _replay(view, event)
            if replayed is None:
                return None
            view = replayed
    except (PcifleetError, KeyError, ValueError):  # refused: the view was not what we thought
        return None
    return view


def _replay(view: HostState, event: Event) -> HostState | None:
    if event.state in LIVE_STATES and event.placement:
        return apply(view, placement_from_json(event.instance_id, event.placement), allocate=True)
    if event.state == _DELETED and event.instance_id in view.placements:
        return release(view, event.instance_id)
    return None  # the guest changed state since without a stamp: its event is unknowable


def catch_up_views(
    session: Session, stale: Sequence[tuple[str, int, int, HostState]]
) -> dict[str, HostState]:
    """Replay the events of many hosts at once: ``(host id, known, target, view)`` each;
    returns the hosts that could be caught up, with their views at ``target``."""
    events = read_events(session, {host_id: known for host_id, known, _, _ in stale})
    done: dict[str, HostState] = {}
    for host_id, known, target, view in stale:
        advanced = advance(view, known, target, events.get(host_id, ()))
        if advanced is not None:
            done[host_id] = advanced
    return done
