"""``/v1/hosts/{host}/desired``: the desired state an agent applies on its host.

The agent keeps no local state that could diverge: after a restart it reads this and
reconciles, so the controller's database stays the one truth about allocations.
"""

from __future__ import annotations

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.routes.hosts import HostRef
from pcifleet.control.api.schemas.agent import (
    DesiredDeviceOut,
    DesiredInstanceOut,
    DesiredStateOut,
)
from pcifleet.control.scheduler.codec import LIVE_STATES
from pcifleet.control.services.instances import InstanceRecord
from pcifleet.control.services.principal import LOCAL_ADMIN


def _instance(record: InstanceRecord) -> DesiredInstanceOut:
    return DesiredInstanceOut(
        id=record.id,
        name=record.name,
        state=str(record.state),
        devices=[
            DesiredDeviceOut(
                address=str(address),
                request_id=chosen.request.request_id,
                requester=chosen.request.requester.name,
            )
            for chosen in record.devices
            for address in chosen.devices
        ],
    )


def desired(ctx: Ctx, host: HostRef) -> DesiredStateOut:
    """The live instances placed on ``host`` and their devices (admin, or the host's agent)."""
    ctx.who.require_host(host, "reading the desired state")
    detail = ctx.services.inventory.show_host(host)
    records = ctx.services.instances.list(LOCAL_ADMIN)
    return DesiredStateOut(
        host=detail.host.name,
        instances=[
            _instance(r)
            for r in records
            if r.host_id == detail.host.id and r.state.value in LIVE_STATES
        ],
    )
