"""``/v1/networks`` and ``/v1/ports``: networks with segments, ports with their binding."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from pcifleet.control.api.schemas.common import Name, Out, Project, Strict
from pcifleet.domain.request import NumaPolicy
from pcifleet.domain.vnic import VnicType
from pcifleet.network.segments import NetworkType

Physnet = Annotated[str, Field(min_length=1, max_length=64)]
Kbps = Annotated[int, Field(ge=0, le=2**31 - 1)]


class SegmentIn(Strict):
    network_type: NetworkType
    physical_network: Physnet | None = None
    #: VLAN id or VNI; left out: allocated from the configured ranges
    segmentation_id: int | None = None


class NetworkCreate(Strict):
    name: Name
    segments: list[SegmentIn] = Field(min_length=1, max_length=16)
    project: Project | None = None
    shared: bool = False


class SegmentOut(Out):
    network_type: str
    physical_network: str | None
    segmentation_id: int | None


class NetworkOut(Out):
    id: str
    name: str
    project: str
    shared: bool
    segments: list[SegmentOut]
    created_at: dt.datetime


class NetworkList(Out):
    networks: list[NetworkOut]


class QosIn(Strict):
    """Egress rates in kbit/s; a VF enforces whole Mbit/s and no burst."""

    max_kbps: Kbps | None = None
    min_kbps: Kbps | None = None
    max_burst_kbps: Kbps | None = None


class PortCreate(Strict):
    network: Annotated[str, Field(min_length=1, max_length=255)]
    name: Annotated[str, Field(max_length=255)] = ""
    vnic_type: VnicType = VnicType.NORMAL
    mac_address: Annotated[str, Field(min_length=1, max_length=17)] | None = None
    trusted: bool | None = None
    port_security: bool = True
    propagate_uplink_status: bool = False
    admin_state_up: bool = True
    qos: QosIn | None = None
    security_groups: list[Annotated[str, Field(max_length=255)]] = Field(
        default_factory=list, max_length=16
    )
    numa_policy: NumaPolicy | None = None


class VfOut(Out):
    spoofchk: bool
    link_state: str
    max_tx_rate_mbps: int | None
    min_tx_rate_mbps: int | None


class BindingOut(Out):
    host: str
    vif_type: str
    vif_details: dict[str, str | int | bool | None]
    profile: dict[str, str | int | bool | None]


class PortOut(Out):
    id: str
    name: str
    project: str
    network_id: str
    mac_address: str
    vnic_type: str
    trusted: bool | None
    port_security: bool
    propagate_uplink_status: bool
    admin_state_up: bool
    qos_max_kbps: int | None
    qos_min_kbps: int | None
    numa_policy: NumaPolicy | None
    instance_id: str | None
    vif_type: str
    binding: BindingOut | None
    #: what the agent sets on the VF (None: the port has no VF)
    vf: VfOut | None
    #: e.g. a QoS rate rounded to whole Mbit/s
    notes: list[str]
    created_at: dt.datetime


class PortList(Out):
    ports: list[PortOut]
