"""Live migration plan: what happens to each device and port of a guest when it moves.

Pure: given the guest's device requests (flavor groups and ports), the devices each holds on
the source, the vnic type of every port and the source devices' tags, :func:`plan_migration`
gives one :class:`MigrationItem` per device request and per device-less port, each with an
:class:`Action` and a sentence saying why (Nova's ``_check_can_migrate_pci`` and the per-vnic
behaviour of Train's SR-IOV live migration, see the vnic table in :mod:`pcifleet.domain.vnic`):

- ``transparent`` (macvtap, virtio-forwarder): the guest keeps its virtio NIC; a VF is claimed
  on the destination and the interface's source device is rewritten in the migrated XML;
- ``unplug-replug`` (direct, vdpa, remote-managed; direct-physical when its PF is marked
  live_migratable): detached from the running guest before the move, a device claimed on the
  destination and attached there after;
- ``move`` (flavor devices whose group asks for ``live_migratable=true``): re-claimed on the
  destination, the ``<hostdev>`` source address rewritten (VFIO migration);
- ``no-device`` (normal ports): nothing for pcifleet to do;
- ``refused``: a flavor device whose group does not ask for live-migratable devices, a
  direct-physical port whose PF is not marked live_migratable, a port type that can never
  move. One refusal refuses the whole migration; every reason is listed.

Mixing transparent (or device-less) ports with unplugged ones gets a warning: the direct
ports' NICs vanish from the guest during the move (bond them with a virtio NIC).

:meth:`MigrationPlan.with_destination` fills in the destination devices once the scheduler
has claimed them (the order of the devices within each request is kept, Nova's zip).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceType
from pcifleet.domain.placement import Placement
from pcifleet.domain.request import DeviceRequest, Requester, RequesterKind
from pcifleet.domain.tags import Tags
from pcifleet.domain.vnic import LiveMigration, VnicType, vnic_info


class Action(enum.StrEnum):
    TRANSPARENT = "transparent"
    UNPLUG_REPLUG = "unplug-replug"
    MOVE = "move"
    NO_DEVICE = "no-device"
    REFUSED = "refused"


#: actions that need a device claimed on the destination
MOVES_DEVICES: Final = frozenset({Action.TRANSPARENT, Action.UNPLUG_REPLUG, Action.MOVE})


@dataclass(frozen=True, slots=True)
class PortInfo:
    """A port of the guest as the plan needs it: its id and vnic type."""

    port_id: str
    vnic_type: VnicType


@dataclass(frozen=True, slots=True)
class MigrationItem:
    """One device request (or one device-less port) and what the migration does to it."""

    requester: Requester
    #: None for flavor (group) devices
    vnic_type: VnicType | None
    action: Action
    reason: str
    #: index in the guest's device requests (None: a port without a device)
    request_index: int | None = None
    source: tuple[PciAddress, ...] = ()
    destination: tuple[PciAddress, ...] = ()

    @property
    def is_port(self) -> bool:
        return self.requester.kind is RequesterKind.PORT

    @property
    def label(self) -> str:
        kind = "port" if self.is_port else "group"
        return f"{kind} {self.requester.name}"


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    instance_id: str
    items: tuple[MigrationItem, ...]
    warnings: tuple[str, ...] = ()
    source_host: str | None = None
    destination_host: str | None = None

    @property
    def refusals(self) -> tuple[MigrationItem, ...]:
        return tuple(i for i in self.items if i.action is Action.REFUSED)

    @property
    def allowed(self) -> bool:
        return not self.refusals

    @property
    def refusal(self) -> str:
        """One sentence naming every item that cannot move and why (empty when allowed)."""
        return "; ".join(f"{i.label}: {i.reason}" for i in self.refusals)

    def of_action(self, action: Action) -> tuple[MigrationItem, ...]:
        return tuple(i for i in self.items if i.action is action)

    @property
    def device_map(self) -> Mapping[PciAddress, PciAddress]:
        """Source device -> destination device, for every device that moves."""
        return MappingProxyType(
            {s: d for i in self.items for s, d in zip(i.source, i.destination, strict=False)}
        )

    def with_destination(self, host: str, placement: Placement) -> MigrationPlan:
        """The plan with the devices claimed on ``host`` (``placement`` of the same requests)."""
        items = tuple(
            replace(item, destination=placement.devices[item.request_index])
            if item.request_index is not None and item.action in MOVES_DEVICES
            else item
            for item in self.items
        )
        return replace(self, items=items, destination_host=host)


# --- building the plan -----------------------------------------------------------------------


def infer_vnic_type(request: DeviceRequest) -> VnicType:
    """The vnic type a port request implies when the port itself is unknown (a tool's request).

    direct-physical and vdpa set ``dev_type``, remote-managed sets ``remote_managed`` "True";
    the rest could be direct or macvtap: assume direct, the conservative choice (unplugged).
    """
    dev_types = {alt.dev_type for alt in request.alternatives}
    if DeviceType.PF in dev_types:
        return VnicType.DIRECT_PHYSICAL
    if DeviceType.VDPA in dev_types:
        return VnicType.VDPA
    if any((alt.prop("remote_managed") or "").lower() == "true" for alt in request.alternatives):
        return VnicType.REMOTE_MANAGED
    return VnicType.DIRECT


def _marked(devices: Sequence[PciAddress], tags: Mapping[PciAddress, Tags]) -> bool:
    """True when every device is tagged ``live_migratable`` "true" by its device spec."""
    return bool(devices) and all(
        (tags[a].get_folded("live_migratable") if a in tags else None) == "true" for a in devices
    )


def _group_item(index: int, request: DeviceRequest, held: tuple[PciAddress, ...]) -> MigrationItem:
    if request.is_live_migratable():
        reason = (
            "live-migratable device: claimed on the destination, the hostdev source address "
            "rewritten (VFIO migration)"
        )
        return MigrationItem(request.requester, None, Action.MOVE, reason, index, held)
    reason = (
        f"group {request.requester.name} does not explicitly request live-migratable devices "
        "(live_migratable=true)"
    )
    return MigrationItem(request.requester, None, Action.REFUSED, reason, index, held)


def _port_reason(vnic: VnicType, migration: LiveMigration) -> str:
    if migration is LiveMigration.TRANSPARENT:
        return (
            f"{vnic}: the guest keeps its virtio NIC; a VF is claimed on the destination and "
            "the interface's source device rewritten"
        )
    return (
        f"{vnic}: unplugged from the guest before the move, a device claimed on the "
        "destination and plugged back after (the guest loses this NIC meanwhile)"
    )


def _port_item(
    index: int,
    request: DeviceRequest,
    held: tuple[PciAddress, ...],
    vnic: VnicType,
    tags: Mapping[PciAddress, Tags],
) -> MigrationItem:
    migration = vnic_info(vnic).live_migration
    who = request.requester
    if migration is LiveMigration.NEVER or not vnic_info(vnic).needs_device:
        reason = f"{vnic} ports cannot be live-migrated"
        return MigrationItem(who, vnic, Action.REFUSED, reason, index, held)
    if vnic is VnicType.DIRECT_PHYSICAL and not _marked(held, tags):
        reason = "direct-physical: the PF is not marked live_migratable by its device spec"
        return MigrationItem(who, vnic, Action.REFUSED, reason, index, held)
    action = Action.TRANSPARENT if migration is LiveMigration.TRANSPARENT else Action.UNPLUG_REPLUG
    return MigrationItem(who, vnic, action, _port_reason(vnic, migration), index, held)


def _deviceless_item(port: PortInfo) -> MigrationItem:
    who = Requester(RequesterKind.PORT, port.port_id)
    if vnic_info(port.vnic_type).live_migration is LiveMigration.NEVER:
        reason = f"{port.vnic_type} ports cannot be live-migrated"
        return MigrationItem(who, port.vnic_type, Action.REFUSED, reason)
    reason = f"{port.vnic_type}: no device; moves like any virtio NIC"
    return MigrationItem(who, port.vnic_type, Action.NO_DEVICE, reason)


def _warnings(items: Sequence[MigrationItem]) -> tuple[str, ...]:
    unplugged = [i.requester.name for i in items if i.action is Action.UNPLUG_REPLUG]
    others = [
        i.requester.name
        for i in items
        if i.is_port and i.action in (Action.TRANSPARENT, Action.NO_DEVICE)
    ]
    if not (unplugged and others):
        return ()
    return (
        "mixed vnic types: the direct ports "
        f"({', '.join(unplugged)}) will be unplugged during the move while the other ports "
        f"({', '.join(others)}) stay connected; bond them to keep connectivity",
    )


def plan_migration(
    instance_id: str,
    requests: Sequence[DeviceRequest],
    devices: Sequence[tuple[PciAddress, ...]],
    ports: Sequence[PortInfo] = (),
    tags: Mapping[PciAddress, Tags] | None = None,
    source_host: str | None = None,
) -> MigrationPlan:
    """The plan of moving a guest: one item per device request, then per device-less port.

    ``devices`` are the source devices per request (the placement's); ``ports`` give the vnic
    type of each port (ports missing there are inferred from their request, see
    :func:`infer_vnic_type`); ``tags`` the source devices' tags (direct-physical ports need
    their PF tagged ``live_migratable``).
    """
    known = {p.port_id: p.vnic_type for p in ports}
    device_tags = tags or {}
    items: list[MigrationItem] = []
    for index, request in enumerate(requests):
        held = devices[index] if index < len(devices) else ()
        if request.from_port:
            vnic = known.get(request.requester.name) or infer_vnic_type(request)
            items.append(_port_item(index, request, held, vnic, device_tags))
        else:
            items.append(_group_item(index, request, held))
    with_device = {r.requester.name for r in requests if r.from_port}
    items.extend(_deviceless_item(p) for p in ports if p.port_id not in with_device)
    return MigrationPlan(instance_id, tuple(items), _warnings(items), source_host)
