"""``/v1/instances``: boot (201; an instance that cannot be placed is returned in ``error``
with its fault), list, show, delete (200 with the deleted instance), explain (a dry run)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Path, Query

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.schemas.common import Project
from pcifleet.control.api.schemas.instances import (
    BootIn,
    CellOut,
    ChosenOut,
    ExplainIn,
    ExplainOut,
    FaultOut,
    HostOutcomeOut,
    InstanceList,
    InstanceOut,
    OutcomeGroupOut,
    PortIn,
    RequestOut,
)
from pcifleet.control.scheduler.codec import InstanceState
from pcifleet.control.scheduler.outcomes import HostOutcome
from pcifleet.control.services.instances import InstanceRecord, PortRequest
from pcifleet.control.services.networks import Nic
from pcifleet.domain.placement import Placement
from pcifleet.domain.request import DeviceRequest

InstanceId = Annotated[str, Path(min_length=1, max_length=64)]


def _ports(ports: Sequence[PortIn]) -> tuple[PortRequest, ...]:
    return tuple(
        PortRequest(p.port_id, p.vnic_type, p.physical_network, p.trusted, p.numa_policy)
        for p in ports
    )


def _cells(placement: Placement | None) -> list[CellOut]:
    if placement is None:
        return []
    return [
        CellOut(
            guest_node=c.guest_node,
            host_cell=c.host_cell,
            vcpus=c.vcpus,
            memory_mb=c.memory_mb,
            pinned_cpus=sorted(c.pinned_cpus),
            hugepage_size_kb=c.hugepage_size_kb,
            hugepages=c.hugepages,
        )
        for c in placement.cells
    ]


def _requests(requests: Sequence[DeviceRequest], placement: Placement | None) -> list[RequestOut]:
    chosen = placement.devices if placement else ()
    return [
        RequestOut(
            request_id=r.request_id,
            requester_kind=str(r.requester.kind),
            requester=r.requester.name,
            count=r.count,
            numa_policy=r.numa_policy,
            devices=[str(a) for a in chosen[i]] if i < len(chosen) else [],
        )
        for i, r in enumerate(requests)
    ]


def instance_out(record: InstanceRecord) -> InstanceOut:
    fault = record.fault
    return InstanceOut(
        id=record.id,
        name=record.name,
        project=record.project,
        state=str(record.state),
        flavor=record.flavor,
        vcpus=record.vcpus,
        memory_mb=record.memory_mb,
        host_id=record.host_id,
        host=record.host,
        cells=_cells(record.placement),
        requests=_requests(record.requests, record.placement),
        fault=None
        if fault is None
        else FaultOut(code=fault.code, message=fault.message, details=list(fault.details)),
        created_at=record.created_at,
        updated_at=record.updated_at,
        deleted_at=record.deleted_at,
    )


def boot(ctx: Ctx, body: BootIn) -> InstanceOut:
    """Boot an instance (201): ``active`` on its host, or ``error`` with why nothing fits.

    400 for an unknown or invisible group, 403 when a quota would be exceeded, 404 for an
    unknown flavor, 409 ``pcifleet.concurrent_update`` when the claim kept losing races.
    """
    nics = [Nic(n.net, n.port, n.vnic_type) for n in body.nics]
    resolved = ctx.services.networks.resolve_nics(ctx.who, nics)
    try:
        record = ctx.services.instances.boot(
            ctx.who,
            body.name,
            body.flavor,
            project=body.project,
            ports=(*_ports(body.ports), *resolved.ports),
        )
    except Exception:
        ctx.services.networks.delete_ports(ctx.who, resolved.created)
        raise
    if record.state is InstanceState.ERROR:
        ctx.services.networks.delete_ports(ctx.who, resolved.created)
    return instance_out(record).model_copy(update={"warnings": list(resolved.warnings)})


def list_instances(
    ctx: Ctx,
    project: Annotated[Project | None, Query()] = None,
    include_deleted: Annotated[bool, Query()] = False,
) -> InstanceList:
    """Instances the caller may see (members: their project's), oldest first."""
    records = ctx.services.instances.list(ctx.who, project=project, include_deleted=include_deleted)
    return InstanceList(instances=[instance_out(r) for r in records])


def show(ctx: Ctx, instance_id: InstanceId) -> InstanceOut:
    return instance_out(ctx.services.instances.show(ctx.who, instance_id))


def delete(ctx: Ctx, instance_id: InstanceId) -> InstanceOut:
    """Delete the instance, freeing its devices and their PF/VF relatives (200)."""
    return instance_out(ctx.services.instances.delete(ctx.who, instance_id))


def _outcome(outcome: HostOutcome) -> HostOutcomeOut:
    return HostOutcomeOut(
        host=outcome.host,
        host_id=outcome.host_id,
        passed=outcome.passed,
        stage=outcome.stage,
        message=outcome.message,
        request_index=outcome.request_index,
        weight=list(outcome.weight),
    )


def explain(ctx: Ctx, body: ExplainIn) -> ExplainOut:
    """What a boot would get now, with every host's outcome grouped; claims nothing."""
    service = ctx.services.instances
    result = service.explain(
        ctx.who,
        body.flavor,
        project=body.project,
        ports=_ports(body.ports),
        examples=body.examples,
    )
    summary = result.summary
    chosen = result.explanation.chosen
    groups = [
        OutcomeGroupOut(
            passed=g.passed,
            stage=g.stage,
            request_index=g.request_index,
            summary=g.summary,
            count=g.count,
            examples=[_outcome(o) for o in g.examples],
        )
        for g in summary.groups
    ]
    return ExplainOut(
        flavor=result.flavor,
        project=result.project,
        hosts=summary.hosts,
        passed=result.explanation.passed,
        chosen=None
        if chosen is None
        else ChosenOut(
            host=chosen.host,
            host_id=chosen.host_id,
            cells=_cells(chosen.placement),
            requests=_requests(result.request.device_requests, chosen.placement),
        ),
        sentence=summary.sentence,
        groups=groups,
    )
