"""``/v1/hosts/{host}/desired``: what the controller wants a host's agent to have plugged.

Everything the agent needs to plug an instance travels here, so the agent never asks another
endpoint: the guest's size and NUMA placement, its flavor devices (with the ``managed`` tag),
and its ports with the VF settings the binding implies. Fields added after the first version
have defaults, so older agents keep parsing the document.
"""

from __future__ import annotations

from pydantic import Field

from pcifleet.control.api.schemas.common import Out
from pcifleet.control.api.schemas.migrations import PlanOut


class DesiredDeviceOut(Out):
    """One device of an instance, with the request that claimed it."""

    address: str
    request_id: str
    requester: str
    #: ``group`` (a device group of the flavor) or ``port`` (``requester`` is then the port id)
    requester_kind: str = "group"
    dev_type: str | None = None
    #: libvirt detaches the host driver itself (Nova's ``managed`` tag; absent means yes)
    managed: bool = True


class DesiredCellOut(Out):
    """One guest NUMA node on the host cell the scheduler chose."""

    guest_node: int
    host_cell: int
    vcpus: int
    memory_mb: int
    pinned_cpus: list[int] = Field(default_factory=list)
    hugepage_size_kb: int | None = None


class DesiredPortOut(Out):
    """A port of the instance and what its VF must be set to before the guest gets it.

    ``vf_address``/``vf_index``/``pf_address``/``pf_ifname`` locate the VF (a
    ``direct-physical`` port has only ``pf_address``); ``vlan`` comes from the binding's vif
    details (None: untagged); rates are the VF's whole Mbit/s (None: no limit set);
    ``trusted`` None leaves the VF's trust as it is.
    """

    id: str
    vnic_type: str
    mac_address: str
    vif_type: str = "unbound"
    vlan: int | None = None
    vf_address: str | None = None
    vf_index: int | None = None
    pf_address: str | None = None
    pf_ifname: str | None = None
    vf_ifname: str | None = None
    physical_network: str | None = None
    min_tx_rate_mbps: int | None = None
    max_tx_rate_mbps: int | None = None
    spoofchk: bool | None = None
    trusted: bool | None = None
    #: auto, enable or disable (None: no VF to set)
    link_state: str | None = None
    managed: bool = True


class DesiredInstanceOut(Out):
    """An instance placed on the host and the devices it holds there."""

    id: str
    name: str
    state: str
    devices: list[DesiredDeviceOut] = Field(default_factory=list)
    vcpus: int = 0
    memory_mb: int = 0
    #: guest NUMA nodes; empty when the guest floats over the host's cells
    cells: list[DesiredCellOut] = Field(default_factory=list)
    ports: list[DesiredPortOut] = Field(default_factory=list)
    #: the live migration in flight from this host (the source agent runs it), else None
    migration: DesiredMigrationOut | None = None


class DesiredMigrationOut(Out):
    """A live migration the source host's agent runs: where to, the plan with the
    destination devices, and the instance as it will be on the destination (its devices and
    ports located on the destination's PFs and VFs, with their VF settings)."""

    id: str
    destination_host: str
    #: the destination's hypervisor URI as its agent registered it (None: unknown)
    destination_uri: str | None = None
    plan: PlanOut
    destination: DesiredInstanceOut


class DesiredStateOut(Out):
    """Every live instance on the host: the agent plugs these and unplugs anything else."""

    host: str
    instances: list[DesiredInstanceOut]
    #: instances migrating TO this host: their domains may appear here before the migration
    #: completes, and the agent must leave them alone until then
    incoming: list[str] = Field(default_factory=list)


DesiredInstanceOut.model_rebuild()
