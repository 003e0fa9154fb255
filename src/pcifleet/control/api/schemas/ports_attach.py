"""``/v1/instances/{id}/ports``: attach a port to a running instance, and detach it."""

from __future__ import annotations

from pydantic import Field

from pcifleet.control.api.schemas.common import Out, Strict
from pcifleet.control.api.schemas.instances import InstanceOut, NicIn, PortId
from pcifleet.control.api.schemas.networks import PortOut


class PortAttachIn(Strict):
    """Exactly one: an existing unbound ``port`` id, or a ``nic`` on a network (a port is
    created, and deleted again when the attach fails)."""

    port: PortId | None = None
    nic: NicIn | None = None


class PortAttachOut(Out):
    instance: InstanceOut
    port: PortOut
    #: e.g. the mixed vnic types warning (live migration will unplug the direct ports)
    warnings: list[str] = Field(default_factory=list)
