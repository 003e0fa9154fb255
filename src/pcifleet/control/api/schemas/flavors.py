"""``/v1/flavors``: guest shapes with Nova extra specs."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from pcifleet.control.api.schemas.common import Name, Out, Strict
from pcifleet.domain.placement import CpuPolicy
from pcifleet.domain.request import NumaPolicy

SpecKey = Annotated[str, Field(min_length=1, max_length=255)]
SpecValue = Annotated[str, Field(max_length=255)]
_INT32 = 2**31 - 1


class FlavorCreate(Strict):
    name: Name
    vcpus: int = Field(ge=1, le=4096)
    memory_mb: int = Field(ge=1, le=_INT32)
    #: shorthand for extra spec ``hw:numa_nodes``
    numa_nodes: int | None = Field(default=None, ge=1, le=64)
    #: shorthand for extra spec ``hw:cpu_policy``
    cpu_policy: CpuPolicy | None = None
    #: shorthand for extra spec ``hw:mem_page_size`` (small, large, any, 2MB, 1GB, KiB)
    hugepage_size: Annotated[str, Field(min_length=1, max_length=16)] | None = None
    #: Nova extra specs, e.g. ``pci_passthrough:alias`` = ``gpu:1,qat:2``
    extra_specs: dict[SpecKey, SpecValue] = Field(default_factory=dict, max_length=128)
    description: Annotated[str, Field(max_length=1000)] | None = None


class GroupCountOut(Out):
    group: str
    count: int


class FlavorOut(Out):
    id: str
    name: str
    vcpus: int
    memory_mb: int
    numa_nodes: int | None
    cpu_policy: CpuPolicy
    #: "small", "large", "any", or a size in KiB as text; None: no wish
    page_size: str | None
    pci_numa_policy: NumaPolicy | None
    device_groups: list[GroupCountOut]
    extra_specs: dict[str, str]
    description: str | None
    created_at: dt.datetime


class FlavorList(Out):
    flavors: list[FlavorOut]
