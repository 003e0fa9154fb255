"""``/v1/hosts/{host}/desired``: what the controller wants a host's agent to have plugged."""

from __future__ import annotations

from pydantic import Field

from pcifleet.control.api.schemas.common import Out


class DesiredDeviceOut(Out):
    """One device of an instance, with the request that claimed it."""

    address: str
    request_id: str
    requester: str


class DesiredInstanceOut(Out):
    """An instance placed on the host and the devices it holds there."""

    id: str
    name: str
    state: str
    devices: list[DesiredDeviceOut] = Field(default_factory=list)


class DesiredStateOut(Out):
    """Every live instance on the host: the agent plugs these and unplugs anything else."""

    host: str
    instances: list[DesiredInstanceOut]
