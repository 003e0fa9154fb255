"""``/v1/flavors``: guest shapes; extra specs validated as Nova does."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.schemas.flavors import (
    FlavorCreate,
    FlavorList,
    FlavorOut,
    GroupCountOut,
)
from pcifleet.control.services.flavors import FlavorRecord, merge_extra_specs, parse_flavor

FlavorName = Annotated[str, Path(min_length=1, max_length=255)]


def _out(record: FlavorRecord) -> FlavorOut:
    flavor = record.flavor
    return FlavorOut(
        id=record.id,
        name=flavor.name,
        vcpus=flavor.vcpus,
        memory_mb=flavor.memory_mb,
        numa_nodes=flavor.numa_nodes,
        cpu_policy=flavor.cpu_policy,
        page_size=None if flavor.page_size is None else str(flavor.page_size),
        pci_numa_policy=flavor.pci_numa_policy,
        device_groups=[GroupCountOut(group=g.name, count=g.count) for g in flavor.device_groups],
        extra_specs=dict(flavor.extra_specs),
        description=record.description,
        created_at=record.created_at,
    )


def create(ctx: Ctx, body: FlavorCreate) -> FlavorOut:
    """Create a flavor (201, admin); an invalid extra spec is a 400 naming its key."""
    ctx.who.require_admin("creating a flavor")
    specs = merge_extra_specs(
        body.extra_specs, body.model_dump(include={"numa_nodes", "cpu_policy", "hugepage_size"})
    )
    flavor = parse_flavor(body.name, body.vcpus, body.memory_mb, specs)
    return _out(ctx.services.flavors.create(ctx.who, flavor, description=body.description))


def list_flavors(ctx: Ctx) -> FlavorList:
    """Every flavor, by name."""
    return FlavorList(flavors=[_out(r) for r in ctx.services.flavors.list(ctx.who)])


def show(ctx: Ctx, name: FlavorName) -> FlavorOut:
    return _out(ctx.services.flavors.show(ctx.who, name))


def delete(ctx: Ctx, name: FlavorName) -> None:
    """Delete the flavor (204); instances keep the copy they were booted with."""
    ctx.services.flavors.delete(ctx.who, name)
