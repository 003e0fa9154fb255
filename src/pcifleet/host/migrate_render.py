"""The production :class:`~pcifleet.host.migrate.MigrationRenderer`: XML and VF targets of a
live migration, from the desired state the controller publishes to the source agent.

The desired state of a migrating instance carries the instance twice: as it runs on the
source (its ports bound to the source VFs) and, in ``migration.destination``, as it will run
on the destination (the same ports and flavor devices located on the devices claimed there,
with the destination's PF netdevs and VF indexes). Everything here renders from those two
with pcifleet's own libvirt renderers, so the migrated domain is exactly what a plug on the
destination would have defined:

- :meth:`DesiredMigrationRenderer.destination_xml`: the whole domain on the destination,
  ``<hostdev>`` addresses and macvtap ``<source dev>`` on the destination's devices, the
  unplug-replug ports left out (they are plugged back after the move), and pcifleet's
  ``<metadata>`` describing the instance as placed there, its VFs marked ``pending`` (the
  destination's agent configures them when it adopts the domain);
- :meth:`DesiredMigrationRenderer.fragment`: the hot-plug fragment of one port on either end
  (unplug on the source, re-plug on the destination, re-plug on the source on rollback);
- :meth:`DesiredMigrationRenderer.vf`: the VF a port uses on either end, with its settings.
  With ``configure_destination`` False (the agent's choice: a source host cannot reach the
  destination's netlink) the destination targets are withheld from the executor and left to
  the destination's agent; :meth:`destination_vfs` still lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcifleet.control.api.schemas.agent import (
    DesiredInstanceOut,
    DesiredMigrationOut,
    DesiredPortOut,
)
from pcifleet.control.api.schemas.migrations import PlanOut
from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import PlugFailed
from pcifleet.domain.migration import Action, MigrationItem, MigrationPlan
from pcifleet.domain.request import Requester, RequesterKind
from pcifleet.domain.vnic import VnicType
from pcifleet.host.agent import Plugged
from pcifleet.host.libvirt import render_device, render_domain, to_string
from pcifleet.host.migrate import VfTarget
from pcifleet.host.plugger import (
    Item,
    Renderer,
    VfBinding,
    domain_name,
    domain_spec,
    guest_items,
    vf_binding,
    with_metadata,
)


def plan_of(instance_id: str, plan: PlanOut) -> MigrationPlan:
    """The domain plan from its API form (what the desired state carries)."""
    items = tuple(
        MigrationItem(
            requester=Requester(RequesterKind(i.requester_kind), i.requester),
            vnic_type=None if i.vnic_type is None else VnicType(i.vnic_type),
            action=Action(i.action),
            reason=i.reason,
            source=tuple(PciAddress.parse(a) for a in i.source),
            destination=tuple(PciAddress.parse(a) for a in i.destination),
        )
        for i in plan.items
    )
    return MigrationPlan(
        instance_id, items, tuple(plan.warnings), plan.source_host, plan.destination_host
    )


def _key(item: MigrationItem, destination: bool) -> str:
    """The :func:`~pcifleet.host.plugger.guest_items` key of a plan item on one end."""
    if item.is_port:
        return item.requester.name
    addresses = item.destination if destination else item.source
    return str(addresses[0]) if addresses else item.requester.name


@dataclass(slots=True)
class DesiredMigrationRenderer:
    """Renders a migration from the source's desired instance (with its ``migration``)."""

    source: DesiredInstanceOut
    migration: DesiredMigrationOut
    render: Renderer = render_domain
    #: hand the destination VF targets to the executor (only when the source can reach the
    #: destination's VFs); False leaves them to the destination's agent
    configure_destination: bool = False
    #: the guest's libvirt domain (the same name on both ends)
    domain_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.domain_name = domain_name(self.source.id)

    @property
    def destination(self) -> DesiredInstanceOut:
        return self.migration.destination

    def _end(self, destination: bool) -> DesiredInstanceOut:
        return self.destination if destination else self.source

    def _item(self, item: MigrationItem, destination: bool) -> Item:
        key = _key(item, destination)
        found = guest_items(self._end(destination)).get(key)
        if found is None:
            end = "destination" if destination else "source"
            raise PlugFailed(
                f"{item.label} has no device on the {end} in the desired state",
                instance=self.source.id,
                step="migrate",
            )
        return found

    def fragment(self, item: MigrationItem, destination: bool) -> str:
        return to_string(render_device(self._item(item, destination)))

    def destination_xml(self, plan: MigrationPlan) -> str:
        """The domain on the destination, unplug-replug ports left out, metadata included."""
        unplugged = {_key(i, True) for i in plan.of_action(Action.UNPLUG_REPLUG)}
        items = guest_items(self.destination)
        kept = [item for key, item in items.items() if key not in unplugged]
        spec = domain_spec(self.destination, kept)
        plugged = Plugged.of(self.destination)
        root = with_metadata(self.render(spec), plugged, self.destination_vfs(), pending=True)
        return to_string(root)

    def destination_vfs(self) -> tuple[VfBinding, ...]:
        """Every VF the guest's ports use on the destination, with its settings."""
        return tuple(b for b in map(vf_binding, self.destination.ports) if b is not None)

    def _port(self, item: MigrationItem, destination: bool) -> DesiredPortOut | None:
        ports = self._end(destination).ports
        return next((p for p in ports if p.id == item.requester.name), None)

    def vf(self, item: MigrationItem, destination: bool) -> VfTarget | None:
        if destination and not self.configure_destination:
            return None
        port = self._port(item, destination) if item.is_port else None
        binding = None if port is None else vf_binding(port)
        if binding is None:
            return None
        return VfTarget(binding.pf_ifname, binding.vf_index, binding.settings)


__all__ = ["DesiredMigrationRenderer", "plan_of"]
