"""``/v1/hosts``: the fleet view, and the agents' register/report/heartbeat."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.routes.devices import out as device_out
from pcifleet.control.api.schemas.hosts import (
    CellIO,
    HostDetailOut,
    HostList,
    HostOut,
    HostRegister,
    HostSummaryOut,
    HostUpdate,
    HugePagesIO,
    InventoryIn,
    PoolOut,
    ReportOut,
)
from pcifleet.control.db.records import HostRecord, HostState
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device
from pcifleet.domain.numa import HugePages, NumaCell
from pcifleet.domain.pool import build_pools
from pcifleet.domain.tags import Tags

HostRef = Annotated[str, Path(min_length=1, max_length=255, description="host name or id")]


def _host(host: HostRecord) -> dict[str, object]:
    return {
        "id": host.id,
        "name": host.name,
        "state": host.state,
        "schedulable": host.schedulable,
        "disabled": host.disabled,
        "disabled_reason": host.disabled_reason,
        "generation": host.generation,
        "inventory_generation": host.inventory_generation,
        "last_heartbeat": host.last_heartbeat,
        "last_report": host.last_report,
        "cpu_allocation_ratio": host.cpu_allocation_ratio,
        "physnets": dict(host.physnets),
        "created_at": host.created_at,
        "updated_at": host.updated_at,
    }


def _cell(cell: NumaCell) -> CellIO:
    return CellIO(
        id=cell.id,
        socket=cell.socket,
        cpus=sorted(cell.cpus),
        memory_mb=cell.memory_mb,
        hugepages=[
            HugePagesIO(size_kb=h.size_kb, total=h.total, free=h.free) for h in cell.hugepages
        ],
    )


def _pools(devices: list[Device]) -> list[PoolOut]:
    return [
        PoolOut(
            vendor_id=p.key.vendor_id,
            product_id=p.key.product_id,
            dev_type=p.key.dev_type,
            numa_node=p.key.numa_node,
            parent=None if p.key.parent is None else str(p.key.parent),
            tags=dict(p.key.tags),
            total=p.total,
            free=p.count,
            in_use=p.in_use,
        )
        for p in build_pools(devices)
    ]


def _report(body: InventoryIn) -> InventoryReport:
    devices = [
        Device(
            address=PciAddress.parse(d.address),
            vendor_id=d.vendor_id.lower(),
            product_id=d.product_id.lower(),
            dev_type=d.dev_type,
            class_code=None if d.class_code is None else d.class_code.lower(),
            numa_node=d.numa_node,
            parent=None if d.parent is None else PciAddress.parse(d.parent),
            vf_index=d.vf_index,
            driver=d.driver,
            netdevs=tuple(d.netdevs),
            tags=Tags(d.tags),
        )
        for d in body.devices
    ]
    cells = [
        NumaCell(
            c.id,
            c.socket,
            frozenset(c.cpus),
            c.memory_mb,
            tuple(HugePages(h.size_kb, h.total, h.free) for h in c.hugepages),
        )
        for c in body.cells
    ]
    labels = {PciAddress.parse(d.address): d.label for d in body.devices if d.label}
    return InventoryReport(devices, cells, body.cpu_allocation_ratio, labels)


def list_hosts(ctx: Ctx, state: Annotated[HostState | None, Query()] = None) -> HostList:
    """Every host with its device counts by state (admin)."""
    ctx.who.require_admin("listing hosts")
    summaries = ctx.services.inventory.list_hosts(state)
    return HostList(
        hosts=[
            HostSummaryOut.model_validate(
                _host(s.host)
                | {
                    "device_count": s.device_count,
                    "devices_by_state": {str(k): v for k, v in s.devices_by_state.items()},
                    "vanished": s.vanished,
                }
            )
            for s in summaries
        ]
    )


def show(ctx: Ctx, host: HostRef) -> HostDetailOut:
    """One host: NUMA cells, pools and every device (admin, or the host's agent)."""
    detail = ctx.services.inventory.show_host(host)
    ctx.who.require_host(detail.host.name, "showing")
    return HostDetailOut.model_validate(
        _host(detail.host)
        | {
            "cells": [_cell(c) for c in detail.host.cells],
            "pools": _pools([d.device for d in detail.devices]),
            "devices": [device_out(d) for d in detail.devices],
        }
    )


def register(ctx: Ctx, body: HostRegister) -> HostOut:
    """Register a host by name (idempotent; admin, or the host's own agent)."""
    ctx.who.require_host(body.name, "registration")
    registered = ctx.services.inventory.register_host(body.name, body.hypervisor_uri)
    return HostOut.model_validate(_host(registered))


def report(ctx: Ctx, host: HostRef, body: InventoryIn) -> ReportOut:
    """Replace the host's inventory (409 ``pcifleet.concurrent_update`` on a stale generation)."""
    ctx.who.require_host(host, "an inventory report")
    result = ctx.services.inventory.report(host, body.generation, _report(body))
    return ReportOut(
        host_id=result.host_id,
        generation=result.generation,
        inventory_generation=result.inventory_generation,
        changed=result.changed,
        added=result.added,
        updated=result.updated,
        removed=result.removed,
        unchanged=result.unchanged,
        kept_vanished=[str(a) for a in result.kept_vanished],
        reappeared=[str(a) for a in result.reappeared],
    )


def heartbeat(ctx: Ctx, host: HostRef) -> HostOut:
    """The host is alive (admin, or the host's agent)."""
    ctx.who.require_host(host, "a heartbeat")
    return HostOut.model_validate(_host(ctx.services.inventory.heartbeat(host)))


def update(ctx: Ctx, host: HostRef, body: HostUpdate) -> HostOut:
    """Disable or enable a host for new guests (admin)."""
    ctx.who.require_admin("disabling a host")
    record = ctx.services.inventory.set_disabled(host, body.disabled, body.reason)
    return HostOut.model_validate(_host(record))
