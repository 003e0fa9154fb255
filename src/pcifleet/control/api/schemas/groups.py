"""``/v1/groups``: device groups (Nova's aliases), public or owned by a project."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field

from pcifleet.control.api.schemas.common import Out, Project, Strict
from pcifleet.domain.request import NumaPolicy

Hex4 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{4}$", examples=["10de"])]
GroupName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/\s](?:[^/]*[^/\s])?$")]
TagKey = Annotated[str, Field(min_length=1, max_length=255)]
TagValue = Annotated[str, Field(max_length=255)]
Trait = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Z0-9_]+$")]
ResourceClass = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Z0-9_]+$")]
GroupDeviceType = Literal["type-PCI", "type-PF", "type-VF"]
Description = Annotated[str, Field(max_length=1000)]


class MatchIn(Strict):
    """One alternative: every field given must match the device (tags compared as Nova does)."""

    vendor_id: Hex4 | None = None
    product_id: Hex4 | None = None
    tags: dict[TagKey, TagValue | None] = Field(default_factory=dict, max_length=32)


class GroupFields(Strict):
    match: list[MatchIn] = Field(min_length=1, max_length=64)
    device_type: GroupDeviceType | None = None
    numa_policy: NumaPolicy = NumaPolicy.LEGACY
    live_migratable: bool | None = None
    resource_class: ResourceClass | None = None
    traits: list[Trait] = Field(default_factory=list, max_length=64)
    #: the owning project; absent or null: public (members always create private groups)
    project: Project | None = None
    description: Description | None = None


class GroupCreate(GroupFields):
    name: GroupName


class GroupUpdate(Strict):
    """Only the fields given change; the result is validated as a whole group."""

    match: list[MatchIn] | None = Field(default=None, min_length=1, max_length=64)
    device_type: GroupDeviceType | None = None
    numa_policy: NumaPolicy | None = None
    live_migratable: bool | None = None
    resource_class: ResourceClass | None = None
    traits: list[Trait] | None = Field(default=None, max_length=64)
    project: Project | None = None
    description: Description | None = None


class QuotaSet(Strict):
    #: the most devices of the group the project may hold at once
    limit: int = Field(ge=0, le=1_000_000)


class MatchOut(Out):
    vendor_id: str | None
    product_id: str | None
    tags: dict[str, str | None]


class QuotaOut(Out):
    project: str
    limit: int


class GroupOut(Out):
    id: str
    name: str
    match: list[MatchOut]
    device_type: str | None
    numa_policy: NumaPolicy
    live_migratable: bool | None
    resource_class: str | None
    traits: list[str]
    project: str | None
    public: bool
    description: str | None
    #: "api" or "config"
    source: str
    quotas: list[QuotaOut]
    created_at: dt.datetime
    updated_at: dt.datetime


class GroupList(Out):
    groups: list[GroupOut]
