"""``/v1/hosts``: registration, inventory reports and heartbeats of agents; the fleet view."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from pcifleet.control.api.schemas.common import Out, Strict
from pcifleet.control.api.schemas.devices import DeviceIn, DeviceOut
from pcifleet.control.db.records import HostState
from pcifleet.domain.device import DeviceType

HostName = Annotated[
    str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
_CPU = Annotated[int, Field(ge=0, le=65535)]


class HostRegister(Strict):
    name: HostName
    #: the libvirt URI other hosts migrate guests to (e.g. ``qemu+tls://h2/system``); None
    #: keeps what is stored
    hypervisor_uri: Annotated[str, Field(min_length=1, max_length=1000)] | None = None


class HostUpdate(Strict):
    """Operator switch: a disabled host receives no new guests whatever its heartbeat."""

    disabled: bool
    reason: Annotated[str, Field(max_length=1000)] | None = None


class HugePagesIO(Strict):
    size_kb: int = Field(ge=1, le=2**40)
    total: int = Field(ge=0, le=2**40)
    free: int = Field(ge=0, le=2**40)


class CellIO(Strict):
    id: int = Field(ge=0, le=1023)
    socket: int | None = Field(default=None, ge=0, le=1023)
    cpus: list[_CPU] = Field(default_factory=list, max_length=4096)
    memory_mb: int = Field(ge=0, le=2**40)
    hugepages: list[HugePagesIO] = Field(default_factory=list, max_length=8)


class InventoryIn(Strict):
    """A host's full inventory, made at the ``generation`` its agent last saw (else 409)."""

    generation: int = Field(ge=0, le=2**62)
    devices: list[DeviceIn] = Field(default_factory=list, max_length=100_000)
    cells: list[CellIO] = Field(default_factory=list, max_length=1024)
    #: None keeps the stored ratio
    cpu_allocation_ratio: float | None = Field(default=None, gt=0, le=1000)


class ReportOut(Out):
    host_id: str
    generation: int
    #: echo it in the next report
    inventory_generation: int
    changed: bool
    added: int
    updated: int
    removed: int
    unchanged: int
    #: devices held by an instance that the host no longer reports (kept, flagged vanished)
    kept_vanished: list[str]
    reappeared: list[str]


class HostOut(Out):
    id: str
    name: str
    state: HostState
    #: up and not disabled: may receive new guests
    schedulable: bool
    disabled: bool
    disabled_reason: str | None
    generation: int
    inventory_generation: int
    last_heartbeat: dt.datetime | None
    last_report: dt.datetime | None
    cpu_allocation_ratio: float
    physnets: dict[str, str]
    created_at: dt.datetime
    updated_at: dt.datetime


class HostSummaryOut(HostOut):
    device_count: int
    devices_by_state: dict[str, int]
    vanished: int


class HostList(Out):
    hosts: list[HostSummaryOut]


class PoolOut(Out):
    """Identical devices of the host (same vendor, product, type, NUMA node, parent, tags)."""

    vendor_id: str
    product_id: str
    dev_type: DeviceType
    numa_node: int | None
    parent: str | None
    tags: dict[str, str]
    total: int
    free: int
    in_use: int


class HostDetailOut(HostOut):
    cells: list[CellIO]
    pools: list[PoolOut]
    devices: list[DeviceOut]
