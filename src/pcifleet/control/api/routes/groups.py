"""``/v1/groups``: device groups, public or private to a project, and per-project quotas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.schemas.common import Project
from pcifleet.control.api.schemas.groups import (
    GroupCreate,
    GroupList,
    GroupOut,
    GroupUpdate,
    MatchIn,
    MatchOut,
    QuotaOut,
    QuotaSet,
)
from pcifleet.control.services.groups import GroupRecord
from pcifleet.domain.group import DeviceGroup

GroupName = Annotated[str, Path(min_length=1, max_length=255)]
ProjectPath = Annotated[str, Path(min_length=1, max_length=255)]


def _out(record: GroupRecord) -> GroupOut:
    group = record.group
    return GroupOut(
        id=record.id,
        name=group.name,
        match=[
            MatchOut(vendor_id=m.vendor_id, product_id=m.product_id, tags=dict(m.props))
            for m in group.match
        ],
        device_type=None if group.device_type is None else group.device_type.value,
        numa_policy=group.numa_policy,
        live_migratable=group.live_migratable,
        resource_class=group.resource_class,
        traits=list(group.traits),
        project=group.owner,
        public=group.is_public,
        description=record.description,
        source=record.source,
        quotas=[QuotaOut(project=p, limit=n) for p, n in record.quotas],
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _native_match(match: list[MatchIn]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True, exclude_defaults=True) for m in match]


def _native(body: GroupCreate | GroupUpdate) -> dict[str, Any]:
    """The request in the domain's native format (``project`` is the domain's ``owner``)."""
    fields = body.model_dump(exclude_unset=True, exclude={"description", "match", "project"})
    if body.match is not None:
        fields["match"] = _native_match(body.match)
    if "project" in body.model_fields_set:
        fields["owner"] = body.project
    return fields


def create(ctx: Ctx, body: GroupCreate) -> GroupOut:
    """Create a group (201); members create private groups of their own project only."""
    group = DeviceGroup.from_dict(_native(body))
    return _out(ctx.services.groups.create(ctx.who, group, description=body.description))


def list_groups(
    ctx: Ctx,
    project: Annotated[Project | None, Query(description="public + this project's")] = None,
) -> GroupList:
    """The groups the caller may see, by name."""
    records = ctx.services.groups.list(ctx.who, project=project)
    return GroupList(groups=[_out(r) for r in records])


def show(ctx: Ctx, name: GroupName) -> GroupOut:
    """One group (404 when it does not exist or is another project's)."""
    return _out(ctx.services.groups.show(ctx.who, name))


def update(ctx: Ctx, name: GroupName, body: GroupUpdate) -> GroupOut:
    """Change the fields given; the whole group is validated again."""
    record = ctx.services.groups.update(ctx.who, name, _native(body), description=body.description)
    return _out(record)


def delete(ctx: Ctx, name: GroupName) -> None:
    """Delete the group and its quotas (204)."""
    ctx.services.groups.delete(ctx.who, name)


def set_quota(ctx: Ctx, name: GroupName, project: ProjectPath, body: QuotaSet) -> GroupOut:
    """Limit a project's devices of this group in use (admin)."""
    return _out(ctx.services.groups.set_quota(ctx.who, name, project, body.limit))


def delete_quota(ctx: Ctx, name: GroupName, project: ProjectPath) -> GroupOut:
    """Remove a project's limit (admin)."""
    return _out(ctx.services.groups.set_quota(ctx.who, name, project, None))
