"""``/v1/devices``: the fleet's devices, filterable; operator reserve/unreserve."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.schemas.devices import DeviceList, DeviceOut
from pcifleet.control.services.inventory import DeviceFilter, DeviceInfo
from pcifleet.domain.device import DeviceState, DeviceType

DeviceId = Annotated[str, Path(min_length=1, max_length=36)]
_Hex4 = Query(pattern=r"^[0-9a-fA-F]{4}$")


def out(info: DeviceInfo) -> DeviceOut:
    device = info.device
    return DeviceOut(
        id=info.id,
        host=info.host_name,
        host_id=info.host_id,
        address=str(device.address),
        vendor_id=device.vendor_id,
        product_id=device.product_id,
        dev_type=device.dev_type,
        class_code=device.class_code,
        numa_node=device.numa_node,
        parent=None if device.parent is None else str(device.parent),
        vf_index=device.vf_index,
        driver=device.driver,
        netdevs=list(device.netdevs),
        tags=dict(device.tags),
        resource_class=info.resource_class,
        state=device.state,
        instance_id=device.owner,
        request_id=info.request_id,
        vanished=info.vanished,
        vanished_at=info.vanished_at,
        label=info.label,
    )


def list_devices(
    ctx: Ctx,
    host: Annotated[str | None, Query(max_length=255, description="host id or name")] = None,
    dev_type: Annotated[DeviceType | None, Query(alias="type")] = None,
    state: DeviceState | None = None,
    vendor_id: Annotated[str | None, _Hex4] = None,
    product_id: Annotated[str | None, _Hex4] = None,
    physical_network: Annotated[str | None, Query(max_length=255)] = None,
    numa_node: Annotated[int | None, Query(ge=0, le=1023)] = None,
    vanished: bool | None = None,
    instance_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> DeviceList:
    """Devices matching every filter given, by host name then address (admin)."""
    ctx.who.require_admin("listing devices")
    filters = DeviceFilter(
        host=host,
        dev_type=dev_type,
        state=state,
        vendor_id=None if vendor_id is None else vendor_id.lower(),
        product_id=None if product_id is None else product_id.lower(),
        physical_network=physical_network,
        numa_node=numa_node,
        vanished=vanished,
        instance_id=instance_id,
    )
    infos = ctx.services.inventory.list_devices(filters, limit=limit, offset=offset)
    return DeviceList(devices=[out(info) for info in infos])


def show(ctx: Ctx, device_id: DeviceId) -> DeviceOut:
    ctx.who.require_admin("showing a device")
    return out(ctx.services.inventory.show_device(device_id))


def reserve(ctx: Ctx, device_id: DeviceId) -> DeviceOut:
    """Hold the device out of scheduling (409 when an instance holds it)."""
    ctx.who.require_admin("reserving a device")
    return out(ctx.services.inventory.reserve_device(device_id))


def unreserve(ctx: Ctx, device_id: DeviceId) -> DeviceOut:
    """Give a reserved device back to scheduling."""
    ctx.who.require_admin("unreserving a device")
    return out(ctx.services.inventory.unreserve_device(device_id))
