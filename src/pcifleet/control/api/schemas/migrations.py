"""``/v1/instances/{id}/migrate`` and ``/v1/instances/{id}/migration``: live migration.

The response always carries the whole plan (one item per device request and per device-less
port, with its action and the reason), so an operator sees what will happen to each device
before anything is unplugged; ``migration`` is the record once the destination is claimed.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from pcifleet.control.api.schemas.common import Name, Out, Strict


class MigrateIn(Strict):
    #: the destination host; the scheduler chooses one (NUMA policy honoured) when omitted
    host: Name | None = None
    #: plan only: show the plan with the destination the scheduler would choose, claim nothing
    dry_run: bool = False


class MigrationAbortIn(Strict):
    #: why the move failed (kept on the migration record)
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


class PlanItemOut(Out):
    #: "group" (a flavor device request) or "port"
    requester_kind: str
    #: the group or port id
    requester: str
    #: the port's vnic type (None for flavor devices)
    vnic_type: str | None
    #: transparent, unplug-replug, move, no-device or refused
    action: str
    reason: str
    #: the devices held on the source host
    source: list[str]
    #: the devices claimed (or, in a dry run, that would be claimed) on the destination
    destination: list[str]


class PlanOut(Out):
    instance_id: str
    source_host: str | None
    destination_host: str | None
    allowed: bool
    items: list[PlanItemOut]
    warnings: list[str] = Field(default_factory=list)
    #: one sentence naming every item that cannot move and why (empty when allowed)
    refusal: str = ""


class MigrationOut(Out):
    id: str
    instance_id: str
    #: migrating, completed or aborted
    state: str
    source_host: str | None
    destination_host: str | None
    source_host_id: str | None
    destination_host_id: str | None
    #: why the migration was aborted
    reason: str | None
    plan: PlanOut
    created_at: dt.datetime
    updated_at: dt.datetime


class MigrateOut(Out):
    plan: PlanOut
    #: None for a dry run
    migration: MigrationOut | None = None
