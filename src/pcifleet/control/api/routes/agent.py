"""``/v1/hosts/{host}/desired``: the desired state an agent applies on its host.

The agent keeps no local state that could diverge: after a restart it reads this and
reconciles, so the controller's database stays the one truth about allocations. The document
is built from one host's rows only (:func:`~pcifleet.control.services.desired.desired_for_host`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pcifleet.control.api.auth import Ctx
from pcifleet.control.api.routes.hosts import HostRef
from pcifleet.control.api.routes.migrations import plan_out
from pcifleet.control.api.schemas.agent import (
    DesiredCellOut,
    DesiredDeviceOut,
    DesiredInstanceOut,
    DesiredMigrationOut,
    DesiredPortOut,
    DesiredStateOut,
)
from pcifleet.control.services.desired import (
    DesiredInstance,
    DeviceFacts,
    OutgoingMigration,
    desired_for_host,
)
from pcifleet.control.services.networks import PortRecord
from pcifleet.domain.device import DeviceType
from pcifleet.domain.request import RequesterKind

Facts = Mapping[str, DeviceFacts]


def _devices(desired: DesiredInstance, facts: Facts) -> list[DesiredDeviceOut]:
    out = []
    for chosen in desired.record.devices:
        for address in chosen.devices:
            device = facts.get(str(address))
            out.append(
                DesiredDeviceOut(
                    address=str(address),
                    request_id=chosen.request.request_id,
                    requester=chosen.request.requester.name,
                    requester_kind=chosen.request.requester.kind.value,
                    dev_type=None if device is None else device.dev_type,
                    managed=True if device is None else device.managed,
                )
            )
    return out


def _port_device(desired: DesiredInstance, port: PortRecord, bound: bool = True) -> str | None:
    """The address claimed for the port (its binding's ``pci_slot``, else its request's;
    ``bound`` False: the request's only, as on a migration's destination)."""
    slot = port.binding.profile.get("pci_slot") if port.binding and bound else None
    if isinstance(slot, str):
        return slot
    for chosen in desired.record.devices:
        request = chosen.request.requester
        if request.kind is RequesterKind.PORT and request.name == port.id and chosen.devices:
            return str(chosen.devices[0])
    return None


def _vlan(port: PortRecord) -> int | None:
    raw = port.binding.vif_details.get("vlan") if port.binding else None
    if raw is None or str(raw).strip() in ("", "0"):
        return None
    return int(str(raw))


def _location(address: str | None, facts: Facts) -> dict[str, object]:
    """Where the port's device sits: the VF and its PF (or the PF itself), with netdevs."""
    device = None if address is None else facts.get(address)
    if device is None:
        return {"vf_address": address}
    if device.dev_type != DeviceType.VF.value:
        return {"pf_address": device.address, "pf_ifname": device.ifname}
    pf = None if device.parent is None else facts.get(device.parent)
    return {
        "vf_address": device.address,
        "vf_index": device.vf_index,
        "vf_ifname": device.ifname,
        "pf_address": device.parent,
        "pf_ifname": None if pf is None else pf.ifname,
    }


def _port(
    desired: DesiredInstance, port: PortRecord, facts: Facts, bound: bool = True
) -> DesiredPortOut:
    address = _port_device(desired, port, bound)
    device = None if address is None else facts.get(address)
    profile = port.binding.profile if port.binding else {}
    physnet = profile.get("physical_network")
    vf = port.vf
    return DesiredPortOut.model_validate(
        {
            "id": port.id,
            "vnic_type": port.vnic_type.value,
            "mac_address": port.mac_address,
            "vif_type": port.vif_type,
            "vlan": _vlan(port),
            "physical_network": physnet if isinstance(physnet, str) else None,
            "min_tx_rate_mbps": None if vf is None else vf.min_tx_rate_mbps,
            "max_tx_rate_mbps": None if vf is None else vf.max_tx_rate_mbps,
            "spoofchk": None if vf is None else vf.spoofchk,
            "trusted": port.trusted,
            "link_state": None if vf is None else vf.link_state.value,
            "managed": True if device is None else device.managed,
            **_location(address, facts),
        }
    )


def _migration(outgoing: OutgoingMigration) -> DesiredMigrationOut:
    """The migration for the source agent: the instance as it will be on the destination
    (its ports located on the destination's VFs, not on the source binding's)."""
    return DesiredMigrationOut(
        id=outgoing.id,
        destination_host=outgoing.destination_host,
        destination_uri=outgoing.destination_uri,
        plan=plan_out(outgoing.plan),
        destination=_instance(outgoing.destination, outgoing.devices, bound=False),
    )


def _instance(
    desired: DesiredInstance,
    facts: Facts,
    outgoing: OutgoingMigration | None = None,
    *,
    bound: bool = True,
) -> DesiredInstanceOut:
    record = desired.record
    cells = record.placement.cells if record.placement else ()
    return DesiredInstanceOut(
        id=record.id,
        name=record.name,
        state=str(record.state),
        devices=_devices(desired, facts),
        vcpus=record.vcpus,
        memory_mb=record.memory_mb,
        cells=[
            DesiredCellOut(
                guest_node=c.guest_node,
                host_cell=c.host_cell,
                vcpus=c.vcpus,
                memory_mb=c.memory_mb,
                pinned_cpus=sorted(c.pinned_cpus),
                hugepage_size_kb=c.hugepage_size_kb,
            )
            for c in cells
        ],
        ports=[_port(desired, p, facts, bound) for p in desired.ports],
        migration=None if outgoing is None else _migration(outgoing),
    )


def desired(ctx: Ctx, host: HostRef) -> DesiredStateOut:
    """The live instances placed on ``host`` and their devices (admin, or the host's agent)."""
    ctx.who.require_host(host, "reading the desired state")
    found = desired_for_host(ctx.services.sessions, host)
    return DesiredStateOut(
        host=found.host,
        instances=[
            _instance(i, found.devices, found.outgoing.get(i.record.id)) for i in found.instances
        ],
        incoming=list(found.incoming),
    )
