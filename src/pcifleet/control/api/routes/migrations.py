"""Live migration of an instance: ``POST /v1/instances/{id}/migrate`` (the plan, and unless a
dry run the destination claimed and the migration recorded), ``GET .../migration`` (the
latest), ``POST .../migration/complete`` and ``.../migration/abort`` (the agent's report).

Admins start migrations; complete and abort are for admins and the source host's agent (the
service decides). A plan that refuses a device is a 409 ``pcifleet.migration.refused`` naming
each device; no destination is a 409 ``pcifleet.schedule.no_valid_host`` with the reason of
each filter stage.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.schemas.migrations import (
    MigrateIn,
    MigrateOut,
    MigrationAbortIn,
    MigrationOut,
    PlanItemOut,
    PlanOut,
)
from pcifleet.control.services.migrations import MigrationRecord
from pcifleet.domain.migration import MigrationPlan

InstanceId = Annotated[str, Path(min_length=1, max_length=64)]


def plan_out(plan: MigrationPlan) -> PlanOut:
    return PlanOut(
        instance_id=plan.instance_id,
        source_host=plan.source_host,
        destination_host=plan.destination_host,
        allowed=plan.allowed,
        items=[
            PlanItemOut(
                requester_kind=i.requester.kind.value,
                requester=i.requester.name,
                vnic_type=None if i.vnic_type is None else i.vnic_type.value,
                action=i.action.value,
                reason=i.reason,
                source=[str(a) for a in i.source],
                destination=[str(a) for a in i.destination],
            )
            for i in plan.items
        ],
        warnings=list(plan.warnings),
        refusal=plan.refusal,
    )


def migration_out(record: MigrationRecord) -> MigrationOut:
    return MigrationOut(
        id=record.id,
        instance_id=record.instance_id,
        state=record.state.value,
        source_host=record.plan.source_host,
        destination_host=record.plan.destination_host,
        source_host_id=record.source_host_id,
        destination_host_id=record.dest_host_id,
        reason=record.reason,
        plan=plan_out(record.plan),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def migrate(ctx: Ctx, instance_id: InstanceId, body: MigrateIn) -> MigrateOut:
    """Plan (``dry_run``) or start a live migration: the destination devices are claimed
    atomically before the agent unplugs anything."""
    result = ctx.services.migrations.migrate(ctx.who, instance_id, body.host, dry_run=body.dry_run)
    migration = None if result.migration is None else migration_out(result.migration)
    return MigrateOut(plan=plan_out(result.plan), migration=migration)


def show_migration(ctx: Ctx, instance_id: InstanceId) -> MigrationOut:
    """The instance's latest migration (404 when it never migrated)."""
    return migration_out(ctx.services.migrations.show(ctx.who, instance_id))


def complete_migration(ctx: Ctx, instance_id: InstanceId) -> MigrationOut:
    """The guest runs on the destination: the source devices are freed, ports re-bound."""
    return migration_out(ctx.services.migrations.complete(ctx.who, instance_id))


def abort_migration(ctx: Ctx, instance_id: InstanceId, body: MigrationAbortIn) -> MigrationOut:
    """The move failed: the destination devices are freed, the guest keeps its source."""
    return migration_out(ctx.services.migrations.abort(ctx.who, instance_id, body.reason))
