"""``POST /v1/instances/{id}/ports`` and ``DELETE /v1/instances/{id}/ports/{port_id}``:
attach a port to a running instance (its device claimed on the instance's host) and detach
it (the device and its PF/VF relatives freed, the port unbound)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.routes.instances import instance_out
from pcifleet.control.api.routes.networks import port_out
from pcifleet.control.api.schemas.ports_attach import PortAttachIn, PortAttachOut
from pcifleet.control.services.networks import Nic
from pcifleet.control.services.ports_attach import AttachResult

InstanceId = Annotated[str, Path(min_length=1, max_length=64)]
PortRef = Annotated[str, Path(min_length=1, max_length=64)]


def _out(result: AttachResult) -> PortAttachOut:
    return PortAttachOut(
        instance=instance_out(result.instance),
        port=port_out(result.port),
        warnings=list(result.warnings),
    )


def attach_port(ctx: Ctx, instance_id: InstanceId, body: PortAttachIn) -> PortAttachOut:
    """Attach (201). 409 ``pcifleet.port.no_device_on_host`` when the instance's host has no
    free device for the port, ``pcifleet.port.in_use`` when the port is bound,
    ``pcifleet.port.instance_not_running`` when the instance is not active on a host."""
    nic = None if body.nic is None else Nic(body.nic.net, body.nic.port, body.nic.vnic_type)
    result = ctx.services.ports_attach.attach(ctx.who, instance_id, port_id=body.port, nic=nic)
    return _out(result)


def detach_port(ctx: Ctx, instance_id: InstanceId, port_id: PortRef) -> PortAttachOut:
    """Detach (200): free the port's device and relatives, unbind the port (it stays)."""
    return _out(ctx.services.ports_attach.detach(ctx.who, instance_id, port_id))
