"""Run a live migration on the source host (the agent's part), with rollback.

Pure over interfaces: the hypervisor drivers of both ends, the VF configurators of both ends
and a :class:`MigrationRenderer` that turns plan items into XML and VF targets. The controller
has already claimed the destination devices (:mod:`pcifleet.control.services.migrations`);
:func:`execute_migration` then, in order:

1. configures the destination VFs of the moving ports (MAC, VLAN, ...), remembering their
   previous state;
2. unplugs the ``unplug-replug`` ports (direct, vdpa, remote-managed) from the running guest;
3. migrates with the destination XML (``<hostdev>`` addresses and macvtap source devices
   rewritten to the destination's, unplugged ports left out);
4. plugs the unplugged ports back on the destination, on their new devices.

A failure in steps 1-3 rolls back: the ports are plugged back on the source, the destination
VFs restored; the guest keeps running on the source and the result says ``aborted`` with the
reason (the agent reports it through ``abort``). Once the guest runs on the destination there
is no way back: a port that fails to plug there is listed in ``errors`` and the result is
``completed`` (the agent reports ``complete``; the port can be re-attached later).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pcifleet.domain.errors import PcifleetError
from pcifleet.domain.migration import Action, MigrationItem, MigrationPlan
from pcifleet.host.hypervisor.driver import HypervisorDriver, MigrateOptions
from pcifleet.host.vf.configurator import VfConfigurator
from pcifleet.host.vf.model import VfSettings, settings_from_state


@dataclass(frozen=True, slots=True)
class VfTarget:
    """Which VF a port uses on one end, and the settings it needs there."""

    pf_ifname: str
    vf_index: int
    settings: VfSettings


class MigrationRenderer(Protocol):
    """XML and VF targets for the plan's items (pcifleet's libvirt renderers, or a test's)."""

    #: the libvirt domain name of the guest
    domain_name: str

    def fragment(self, item: MigrationItem, destination: bool) -> str:
        """The hot-plug fragment of a port on the source or destination device."""
        ...

    def destination_xml(self, plan: MigrationPlan) -> str:
        """The domain on the destination: devices rewritten, unplugged ports left out."""
        ...

    def vf(self, item: MigrationItem, destination: bool) -> VfTarget | None:
        """The VF a port uses on one end (None: no VF to configure, e.g. a flavor device)."""
        ...


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    ABORTED = "aborted"


@dataclass(frozen=True, slots=True)
class MigrationOutcome:
    outcome: Outcome
    #: why it was aborted (empty when completed)
    reason: str = ""
    #: steps that failed without changing the outcome (a port not plugged back, a rollback)
    errors: tuple[str, ...] = ()
    #: what was done, in order, for the agent's log
    steps: tuple[str, ...] = field(default=())

    @property
    def completed(self) -> bool:
        return self.outcome is Outcome.COMPLETED


@dataclass(slots=True)
class _Run:
    plan: MigrationPlan
    source: HypervisorDriver
    dest: HypervisorDriver
    vf_dest: VfConfigurator
    render: MigrationRenderer
    configured: list[tuple[VfTarget, VfSettings]] = field(default_factory=list)
    unplugged: list[MigrationItem] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def configure_destination(self) -> None:
        for item in self.plan.items:
            target = self.render.vf(item, True) if item.is_port else None
            if target is None or item.action not in (Action.TRANSPARENT, Action.UNPLUG_REPLUG):
                continue
            before = self.vf_dest.read(target.pf_ifname, target.vf_index)
            undo = settings_from_state(before, target.settings.fields)
            self.vf_dest.apply(target.pf_ifname, target.vf_index, target.settings)
            self.configured.append((target, undo))
            self.steps.append(f"configured {target.pf_ifname} vf {target.vf_index}")

    def unplug(self) -> None:
        for item in self.plan.of_action(Action.UNPLUG_REPLUG):
            self.source.detach_device(self.render.domain_name, self.render.fragment(item, False))
            self.unplugged.append(item)
            self.steps.append(f"unplugged {item.label}")

    def rollback(self) -> None:
        for item in reversed(self.unplugged):
            self._try(
                lambda i=item: self.source.attach_device(  # type: ignore[misc]
                    self.render.domain_name, self.render.fragment(i, False)
                ),
                f"re-plug {item.label} on the source",
            )
        for target, undo in reversed(self.configured):
            self._try(
                lambda t=target, u=undo: self.vf_dest.apply(  # type: ignore[misc]
                    t.pf_ifname, t.vf_index, u
                ),
                f"restore {target.pf_ifname} vf {target.vf_index}",
            )

    def replug(self) -> None:
        for item in self.unplugged:
            self._try(
                lambda i=item: self.dest.attach_device(  # type: ignore[misc]
                    self.render.domain_name, self.render.fragment(i, True)
                ),
                f"plug {item.label} on the destination",
            )

    def _try(self, action: Callable[[], object], what: str) -> None:
        try:
            action()
            self.steps.append(what)
        except PcifleetError as error:
            self.errors.append(f"{what}: {error}")


def execute_migration(
    plan: MigrationPlan,
    source: HypervisorDriver,
    dest: HypervisorDriver,
    dest_uri: str,
    vf_dest: VfConfigurator,
    render: MigrationRenderer,
) -> MigrationOutcome:
    """Move the guest as the plan says; roll back on failure before it has moved."""
    if not plan.allowed:
        return MigrationOutcome(Outcome.ABORTED, f"refused: {plan.refusal}")
    run = _Run(plan, source, dest, vf_dest, render)
    try:
        run.configure_destination()
        run.unplug()
        options = MigrateOptions(dest_xml=render.destination_xml(plan))
        source.migrate(render.domain_name, dest_uri, options)
        run.steps.append(f"migrated to {dest_uri}")
    except PcifleetError as error:
        run.rollback()
        return MigrationOutcome(Outcome.ABORTED, f"{error}", tuple(run.errors), tuple(run.steps))
    run.replug()
    return MigrationOutcome(Outcome.COMPLETED, "", tuple(run.errors), tuple(run.steps))
