"""Typed records the persistence layer hands out: hosts and stored devices.

Services and the scheduler work with these (and the domain's :class:`Device`), never with ORM
rows, so a row can change shape without rippling through the code.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from pcifleet.domain.device import Device
from pcifleet.domain.numa import NumaCell


class HostState(enum.StrEnum):
    """Liveness from heartbeats. A down host receives no new guests."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class HostRecord:
    id: str
    name: str
    #: compare-and-swap counter of every write that depends on the host's devices
    generation: int
    #: the counter an agent echoes in its next report
    inventory_generation: int
    state: HostState
    disabled: bool
    disabled_reason: str | None
    last_heartbeat: dt.datetime | None
    last_report: dt.datetime | None
    cells: tuple[NumaCell, ...]
    cpu_allocation_ratio: float
    physnets: Mapping[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def schedulable(self) -> bool:
        """Up and not disabled: may receive new guests."""
        return self.state is HostState.UP and not self.disabled


@dataclass(frozen=True, slots=True)
class StoredDevice:
    """A device as the controller keeps it: the domain record plus storage facts."""

    id: str
    host_id: str
    device: Device
    #: which request of the owning instance the device serves
    request_id: str | None
    resource_class: str | None
    #: the host stopped reporting it while it was in use: kept until freed
    vanished: bool
    vanished_at: dt.datetime | None
    label: str | None
