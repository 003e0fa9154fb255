"""``/v1/instances``: boot, list, show, delete and the dry run (explain)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from pcifleet.control.api.schemas.common import Name, Out, Project, Strict
from pcifleet.domain.request import NumaPolicy
from pcifleet.domain.vnic import VnicType

PortId = Annotated[str, Field(min_length=1, max_length=64)]
Physnet = Annotated[str, Field(min_length=1, max_length=64)]


class PortIn(Strict):
    """A port that needs a device (until the networking API resolves real ports)."""

    port_id: PortId
    vnic_type: VnicType = VnicType.DIRECT
    physical_network: Physnet | None = None
    trusted: bool | None = None
    numa_policy: NumaPolicy | None = None


class NicIn(Strict):
    """``--nic net=NAME[,vnic-type=...]`` (a port is created) or ``--nic port=ID``."""

    net: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    port: PortId | None = None
    vnic_type: VnicType = VnicType.NORMAL


class BootIn(Strict):
    name: Name
    flavor: Name
    #: defaults to the member's project (admins: ``default``)
    project: Project | None = None
    ports: list[PortIn] = Field(default_factory=list, max_length=32)
    #: networking ports: bound at boot, unbound at delete
    nics: list[NicIn] = Field(default_factory=list, max_length=32)


class ExplainIn(Strict):
    flavor: Name
    project: Project | None = None
    ports: list[PortIn] = Field(default_factory=list, max_length=32)
    #: example hosts shown per outcome group
    examples: int = Field(default=3, ge=0, le=100)


class CellOut(Out):
    guest_node: int
    host_cell: int
    vcpus: int
    memory_mb: int
    pinned_cpus: list[int]
    hugepage_size_kb: int | None
    hugepages: int


class RequestOut(Out):
    """One device request and the devices it got (PCI addresses)."""

    request_id: str
    #: "group" or "port"
    requester_kind: str
    #: the group name or the port id
    requester: str
    count: int
    numa_policy: NumaPolicy | None
    devices: list[str]


class FaultOut(Out):
    code: str
    message: str
    details: list[str]


class InstanceOut(Out):
    id: str
    name: str
    project: str
    #: building, active, error, deleting, deleted
    state: str
    flavor: str
    vcpus: int
    memory_mb: int
    host_id: str | None
    host: str | None
    cells: list[CellOut]
    requests: list[RequestOut]
    fault: FaultOut | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    #: e.g. the mixed vnic types warning (live migration will unplug the direct ports)
    warnings: list[str] = Field(default_factory=list)


class InstanceList(Out):
    instances: list[InstanceOut]


class HostOutcomeOut(Out):
    host: str
    host_id: str
    passed: bool
    stage: str | None
    message: str
    request_index: int | None
    #: the weigher's sort key (smaller is tried first)
    weight: list[int]


class OutcomeGroupOut(Out):
    passed: bool
    stage: str | None
    request_index: int | None
    summary: str
    count: int
    examples: list[HostOutcomeOut]


class ChosenOut(Out):
    host: str
    host_id: str
    cells: list[CellOut]
    requests: list[RequestOut]


class ExplainOut(Out):
    flavor: str
    project: str
    hosts: int
    passed: int
    chosen: ChosenOut | None
    #: "12 hosts: 3 down or disabled; 9 had fewer than ..." (failures only)
    sentence: str
    groups: list[OutcomeGroupOut]
