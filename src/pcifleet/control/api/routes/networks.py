"""``/v1/networks`` and ``/v1/ports``: create, list, show, delete (thin: the service decides)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.schemas.networks import (
    BindingOut,
    NetworkCreate,
    NetworkList,
    NetworkOut,
    PortCreate,
    PortList,
    PortOut,
    SegmentOut,
    VfOut,
)
from pcifleet.control.services.networks import NetworkRecord, PortRecord, QosSpec
from pcifleet.network.segments import SegmentSpec

Ref = Annotated[str, Path(min_length=1, max_length=255)]


def network_out(record: NetworkRecord) -> NetworkOut:
    return NetworkOut(
        id=record.id,
        name=record.name,
        project=record.project,
        shared=record.shared,
        segments=[
            SegmentOut(
                network_type=str(s.network_type),
                physical_network=s.physical_network,
                segmentation_id=s.segmentation_id,
            )
            for s in record.segments
        ],
        created_at=record.created_at,
    )


def port_out(record: PortRecord) -> PortOut:
    binding, vf = record.binding, record.vf
    return PortOut(
        id=record.id,
        name=record.name,
        project=record.project,
        network_id=record.network_id,
        mac_address=record.mac_address,
        vnic_type=str(record.vnic_type),
        trusted=record.trusted,
        port_security=record.port_security,
        propagate_uplink_status=record.propagate_uplink_status,
        admin_state_up=record.admin_state_up,
        qos_max_kbps=record.qos_max_kbps,
        qos_min_kbps=record.qos_min_kbps,
        numa_policy=record.numa_policy,
        instance_id=record.instance_id,
        vif_type=record.vif_type,
        binding=None
        if binding is None
        else BindingOut(
            host=binding.host,
            vif_type=binding.vif_type,
            vif_details=dict(binding.vif_details),
            profile=dict(binding.profile),
        ),
        vf=None
        if vf is None
        else VfOut(
            spoofchk=vf.spoofchk,
            link_state=str(vf.link_state),
            max_tx_rate_mbps=vf.max_tx_rate_mbps,
            min_tx_rate_mbps=vf.min_tx_rate_mbps,
        ),
        notes=list(record.notes),
        created_at=record.created_at,
    )


def create_network(ctx: Ctx, body: NetworkCreate) -> NetworkOut:
    """Create a network (201); segment ids left out are allocated; 409 when one is taken."""
    specs = [
        SegmentSpec(s.network_type, s.physical_network, s.segmentation_id) for s in body.segments
    ]
    record = ctx.services.networks.create_network(
        ctx.who, body.name, specs, project=body.project, shared=body.shared
    )
    return network_out(record)


def list_networks(ctx: Ctx) -> NetworkList:
    """The caller's project's networks and the shared ones."""
    return NetworkList(
        networks=[network_out(n) for n in ctx.services.networks.list_networks(ctx.who)]
    )


def show_network(ctx: Ctx, network: Ref) -> NetworkOut:
    return network_out(ctx.services.networks.get_network(ctx.who, network))


def delete_network(ctx: Ctx, network: Ref) -> None:
    """Delete a network without ports (409 ``pcifleet.network.in_use`` otherwise)."""
    ctx.services.networks.delete_network(ctx.who, network)


def create_port(ctx: Ctx, body: PortCreate) -> PortOut:
    """Create a port (201); 400 names the rule for a burst, security groups on an SR-IOV port,
    or an SR-IOV port on a tunneled-only network."""
    qos = None if body.qos is None else QosSpec(**body.qos.model_dump())
    record = ctx.services.networks.create_port(
        ctx.who,
        body.network,
        name=body.name,
        vnic_type=body.vnic_type,
        mac_address=body.mac_address,
        trusted=body.trusted,
        port_security=body.port_security,
        propagate_uplink_status=body.propagate_uplink_status,
        admin_state_up=body.admin_state_up,
        qos=qos,
        security_groups=body.security_groups,
        numa_policy=body.numa_policy,
    )
    return port_out(record)


def list_ports(
    ctx: Ctx,
    network: Annotated[str | None, Query(max_length=255)] = None,
    instance: Annotated[str | None, Query(max_length=64)] = None,
) -> PortList:
    found = ctx.services.networks.list_ports(ctx.who, network=network, instance=instance)
    return PortList(ports=[port_out(p) for p in found])


def show_port(ctx: Ctx, port_id: Ref) -> PortOut:
    return port_out(ctx.services.networks.get_port(ctx.who, port_id))


def delete_port(ctx: Ctx, port_id: Ref) -> None:
    """Delete an unbound port (409 ``pcifleet.port.in_use`` while an instance uses it)."""
    ctx.services.networks.delete_port(ctx.who, port_id)
