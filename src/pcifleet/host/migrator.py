"""The source agent's part of a live migration: run it once, report it, survive restarts.

The controller has claimed the destination and publishes the migration in the source host's
desired state (:class:`~pcifleet.control.api.schemas.agent.DesiredMigrationOut`). The source
agent's :class:`Migrator` then:

1. connects to the destination hypervisor at the URI its agent registered
   (:func:`connect_peer`: ``qemu+...`` through :class:`LibvirtDriver`, ``fake://`` peers of
   the in-memory fake, ``fake:///PATH`` the file-backed fake's state file);
2. tells an already executed migration from a new one by looking at both ends: a domain gone
   from the source and present at the destination was moved by an earlier run (the agent
   died before reporting), so it is reported complete, never re-run;
3. otherwise runs :func:`~pcifleet.host.migrate.execute_migration` with the
   :class:`~pcifleet.host.migrate_render.DesiredMigrationRenderer` (unplug, move with the
   destination XML, re-plug there; rollback on the source before the move);
4. on success releases the source VFs of the ports that left (their snapshots restored).

The destination's VFs are configured by the destination's own agent when it adopts the
domain (:meth:`~pcifleet.host.plugger.HostApplier.settle`): a source host cannot reach the
destination's netlink, and the destination agent's snapshots are the ones that must be
restored when the guest is deleted there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from pcifleet.control.api.schemas.agent import DesiredInstanceOut, DesiredMigrationOut
from pcifleet.domain.errors import DomainNotFound, PcifleetError, VfUnsupported
from pcifleet.host.hypervisor.driver import HypervisorDriver
from pcifleet.host.hypervisor.fake import FakeHypervisor
from pcifleet.host.hypervisor.fake_file import FAKE_SCHEME, fake_hypervisor
from pcifleet.host.hypervisor.libvirt_driver import LibvirtDriver
from pcifleet.host.migrate import MigrationOutcome, Outcome, execute_migration
from pcifleet.host.migrate_render import DesiredMigrationRenderer, plan_of
from pcifleet.host.plugger import HostApplier, domain_name
from pcifleet.host.vf.model import VfSettings, VfState

log = logging.getLogger("pcifleet.agent.migrate")

Connect = Callable[[str], HypervisorDriver]

_FAKE: Final = f"{FAKE_SCHEME}:"


def connect_peer(source: HypervisorDriver, uri: str) -> HypervisorDriver:
    """The destination hypervisor at ``uri`` as seen from ``source``.

    A fake source reaches its in-memory ``peers`` by URI, and a ``fake:///PATH`` destination
    through its state file (registered as a peer, so the fake's migrate finds it); any other
    URI is a libvirt connection (``qemu+ssh://h2/system``, ``qemu+tls://...``).
    """
    if isinstance(source, FakeHypervisor):
        peer = source.peers.get(uri)
        if peer is None and uri.startswith(_FAKE):
            peer = fake_hypervisor(uri)
            source.peers[uri] = peer
        if peer is not None:
            return peer
    return LibvirtDriver(uri)


class DestinationVfs:
    """The VF configurator handed to the executor for the destination: the destination's
    agent configures its own VFs after the move, so nothing may reach this (the renderer
    withholds the destination targets); a call would be a bug, and fails loudly."""

    def num_vfs(self, pf_ifname: str) -> int:
        return 0

    def read(self, pf_ifname: str, vf_index: int) -> VfState:
        raise VfUnsupported(
            f"{pf_ifname} vf {vf_index}: the destination's VFs are its agent's",
            pf=pf_ifname,
            vf=vf_index,
            field="link",
        )

    def apply(self, pf_ifname: str, vf_index: int, desired: VfSettings) -> VfState:
        return self.read(pf_ifname, vf_index)


def _present(driver: HypervisorDriver, name: str) -> bool:
    try:
        driver.info(name)
    except DomainNotFound:
        return False
    return True


class Migrator:
    """Runs the migrations the desired state assigns to this (source) host."""

    def __init__(self, applier: HostApplier, connect: Connect | None = None) -> None:
        self.applier = applier
        self.connect: Connect = connect or (lambda uri: connect_peer(applier.hypervisor, uri))

    def run(self, instance: DesiredInstanceOut) -> MigrationOutcome:
        """Execute (or recognise as executed) the instance's migration; never raises a
        pcifleet error: a failure is an ``aborted`` outcome with the reason."""
        migration = instance.migration
        if migration is None:
            return MigrationOutcome(Outcome.ABORTED, "no migration in flight")
        if migration.destination_uri is None:
            reason = f"host {migration.destination_host} registered no hypervisor URI"
            return MigrationOutcome(Outcome.ABORTED, reason)
        try:
            dest = self.connect(migration.destination_uri)
            outcome = self._run(instance, migration, dest)
        except PcifleetError as exc:
            return MigrationOutcome(Outcome.ABORTED, str(exc))
        if outcome.completed:
            self.applier.migrated_out(instance)
        return outcome

    def _run(
        self, instance: DesiredInstanceOut, migration: DesiredMigrationOut, dest: HypervisorDriver
    ) -> MigrationOutcome:
        name = domain_name(instance.id)
        if not _present(self.applier.hypervisor, name):
            if _present(dest, name):
                log.info("instance %s already runs on %s", instance.id, migration.destination_host)
                return MigrationOutcome(Outcome.COMPLETED, steps=("already migrated",))
            reason = f"domain {name} is on neither {migration.destination_host} nor this host"
            return MigrationOutcome(Outcome.ABORTED, reason)
        render = DesiredMigrationRenderer(instance, migration, self.applier.render)
        plan = plan_of(instance.id, migration.plan)
        uri = migration.destination_uri or ""
        outcome = execute_migration(
            plan, self.applier.hypervisor, dest, uri, DestinationVfs(), render
        )
        log.info(
            "migration of %s to %s: %s %s (%s)",
            instance.id,
            migration.destination_host,
            outcome.outcome,
            outcome.reason,
            "; ".join(outcome.steps + outcome.errors),
        )
        return outcome


__all__ = ["Connect", "DestinationVfs", "Migrator", "connect_peer"]
