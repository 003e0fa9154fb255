"""The host agent: discover, qualify, report, and apply the controller's desired state.

One agent runs per hypervisor (``pcifleet agent``). Each cycle it rescans sysfs, reports the
full inventory when the rescan found a difference (else it sends a heartbeat), then reads the
desired state of its host and reconciles it through an :class:`Applier`. It never decides
placement and keeps no local state that could diverge from the controller's database: after a
crash or restart the first cycle reports what it finds and re-applies what the controller
says, so no allocation is lost or applied twice.

Failures are classified once (:func:`Agent.cycle`): a scan that fails or a controller that
cannot be reached is logged and retried next cycle; a 409 ``pcifleet.concurrent_update`` on a
report re-reads the host's generation and retries; a controller that rejects the token
(401/403) stops the agent with :data:`EXIT_REFUSED`, because retrying cannot help.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.agent import DesiredInstanceOut
from pcifleet.control.api.schemas.hosts import InventoryIn
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.errors import (
    ConcurrentUpdate,
    Forbidden,
    HostError,
    PcifleetError,
    Unauthorized,
)
from pcifleet.domain.spec import SpecList
from pcifleet.host.migrate import MigrationOutcome
from pcifleet.host.model import PciFunction
from pcifleet.host.qualify import QualifiedScan, qualify
from pcifleet.host.rescan import Rescanner, ScanDiff
from pcifleet.host.vf.mapping import (
    MAPPINGS_OPTION,
    AgentMappings,
    PfSeen,
    PhysnetPlan,
    plan_physnets,
)

log = logging.getLogger("pcifleet.agent")

#: the agent stopped normally (signal, or ``--once`` done)
EXIT_OK: Final = 0
#: ``--once`` could not finish a cycle (scan or controller failure)
EXIT_FAILED: Final = 3
#: the controller rejected the token (401/403): a configuration error, not retried
EXIT_REFUSED: Final = 4

#: how many times a report is retried after a 409 before the next cycle tries again
REPORT_ATTEMPTS: Final = 3


class AgentRefused(Exception):
    """The controller rejected this agent's token; the message says what to fix."""


# --- the report body ------------------------------------------------------------------------


def device_label(function: PciFunction) -> str:
    """The device's human name from pci.ids when installed, else ``vendor:device``.

    (The agent runs on real hosts: it never consults the simulator's catalogue.)
    """
    if function.device_name:
        return function.device_name
    return f"{function.vendor_id}:{function.device_id}"


def _mac_of(function: PciFunction | None) -> str | None:
    if function is None:
        return None
    return next((n.mac for n in function.netdevs if n.mac), None)


def _ifname_of(function: PciFunction) -> str | None:
    return function.netdev_names[0] if function.netdev_names else None


def physnet_plan(qualified: QualifiedScan, mappings: AgentMappings) -> PhysnetPlan:
    """Which PFs of the scan serve which physical network (by their netdev names)."""
    seen = [
        PfSeen(name, pf.address, tuple(vf.address for vf in qualified.scan.vfs_of(pf.address)))
        for pf in qualified.scan.physical_functions()
        if (name := _ifname_of(pf)) is not None
    ]
    return plan_physnets(mappings, seen)


def _physnet_tags(device: Device, tags: dict[str, str], physnet: str | None) -> None:
    """Set the physical network the mapping gives (it wins over a spec tag, with a warning:
    the mapping states how the NIC is cabled); no mapping means no physical network."""
    spec_value = tags.get("physical_network")
    if spec_value is not None and physnet is not None and spec_value != physnet:
        log.warning(
            "device %s: the spec tags physical_network=%s but %s maps it to %s; using %s",
            device.address,
            spec_value,
            MAPPINGS_OPTION,
            physnet,
            physnet,
        )
    if physnet is None:
        tags.pop("physical_network", None)
    else:
        tags["physical_network"] = physnet


def device_tags(
    qualified: QualifiedScan, device: Device, plan: PhysnetPlan | None
) -> dict[str, str] | None:
    """The tags reported for a device (PF MACs, mapped physical networks); None when the
    device is held out (a VF in ``exclude_devices``)."""
    tags = dict(device.tags)
    function = qualified.scan.get(device.address)
    if device.dev_type is DeviceType.PF:
        mac = _mac_of(function)
        if mac:
            tags["mac_address"] = mac
    elif device.dev_type is DeviceType.VF and device.parent is not None:
        mac = _mac_of(qualified.scan.get(device.parent))
        if mac:
            tags["pf_mac_address"] = mac
    if plan is None or device.dev_type not in (DeviceType.PF, DeviceType.VF):
        return tags
    if device.address in plan.excluded():
        return None
    if device.dev_type is DeviceType.PF:
        physnet = next((pf.physnet for pf in plan.pfs if pf.address == device.address), None)
    else:
        physnet = plan.physnet_of_vf(device.address)
    _physnet_tags(device, tags, physnet)
    return tags


def inventory_of(
    qualified: QualifiedScan, generation: int, mappings: AgentMappings | None = None
) -> InventoryIn:
    """The report body: the assignable devices with their tags, and the NUMA cells.

    PFs carry their netdev's MAC (``mac_address``) and VFs their PF's (``pf_mac_address``),
    which the controller puts in the binding profile. With Neutron's
    ``physical_device_mappings`` the PFs and VFs of a mapped NIC are tagged with its physical
    network (the mapping wins over a spec tag, with a warning), PFs and VFs of unmapped NICs
    carry none, and VFs in ``exclude_devices`` are not reported, so the scheduler only offers
    VFs of PFs mapped to the requested physical network.
    """
    labels = {v.function.address: device_label(v.function) for v in qualified.verdicts}
    plan = None if mappings is None else physnet_plan(qualified, mappings)
    devices = []
    for d in qualified.assignable():
        tags = device_tags(qualified, d, plan)
        if tags is None:
            continue
        devices.append(
            {
                "address": str(d.address),
                "vendor_id": d.vendor_id,
                "product_id": d.product_id,
                "dev_type": d.dev_type.value,
                "class_code": d.class_code,
                "numa_node": d.numa_node,
                "parent": None if d.parent is None else str(d.parent),
                "vf_index": d.vf_index,
                "driver": d.driver,
                "netdevs": list(d.netdevs),
                "tags": tags,
                "label": labels[d.address],
            }
        )
    cells = [
        {
            "id": c.id,
            "socket": c.socket,
            "cpus": sorted(c.cpus),
            "memory_mb": c.memory_mb,
            "hugepages": [
                {"size_kb": h.size_kb, "total": h.total, "free": h.free} for h in c.hugepages
            ],
        }
        for c in qualified.scan.numa_cells
    ]
    return InventoryIn.model_validate(
        {"generation": generation, "devices": devices, "cells": cells}
    )


# --- applying the desired state -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plugged:
    """What an applier found or made on the host for one instance.

    Equality is the instance's identity on the host (name, devices, port ids): two equal
    values need nothing done. ``desired`` carries the whole desired instance for appliers
    that plug for real; it is not compared (a value rebuilt from the hypervisor has none).
    """

    instance_id: str
    name: str
    devices: tuple[str, ...]
    ports: tuple[str, ...] = ()
    desired: DesiredInstanceOut | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, instance: DesiredInstanceOut) -> Plugged:
        return cls(
            instance.id,
            instance.name,
            tuple(sorted(d.address for d in instance.devices)),
            tuple(sorted(p.id for p in instance.ports)),
            instance,
        )


class Applier(Protocol):
    """The host side of the desired state. VF configuration and hypervisor plugging implement
    it later; :meth:`found` reads the host's real state so a restarted agent reconciles."""

    def found(self) -> dict[str, Plugged]: ...

    def plug(self, instance: Plugged) -> None: ...

    def unplug(self, instance: Plugged) -> None: ...


@runtime_checkable
class HotPlugApplier(Applier, Protocol):
    """An applier that can change a running instance in place (a port or device gained or
    lost) instead of unplugging and plugging it whole."""

    def update(self, old: Plugged, new: Plugged) -> None: ...


@runtime_checkable
class SettlingApplier(Applier, Protocol):
    """An applier that finishes adopting instances found already plugged (a domain that
    migrated in: its VFs are configured by the destination's agent)."""

    def settle(self, instance: Plugged) -> None: ...


@dataclass
class RecordingApplier:
    """Plugs nothing: it logs and remembers what it would do (the agent's default until the
    hypervisor driver arrives). ``calls`` lists ``("plug"|"unplug", instance id)`` in order."""

    plugged: dict[str, Plugged] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def found(self) -> dict[str, Plugged]:
        return dict(self.plugged)

    def plug(self, instance: Plugged) -> None:
        log.info(
            "would plug instance %s (%s) devices %s",
            instance.instance_id,
            instance.name,
            ",".join(instance.devices) or "-",
        )
        self.plugged[instance.instance_id] = instance
        self.calls.append(("plug", instance.instance_id))

    def unplug(self, instance: Plugged) -> None:
        log.info("would unplug instance %s (%s)", instance.instance_id, instance.name)
        self.plugged.pop(instance.instance_id, None)
        self.calls.append(("unplug", instance.instance_id))


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What one reconcile did: instances plugged, unplugged, changed in place, and failed
    (ids; a failed one was rolled back by the applier and is retried next cycle)."""

    plugged: tuple[str, ...] = ()
    unplugged: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


def _attempt(
    action: Callable[[Plugged], None], what: str, instance: Plugged, failed: list[str]
) -> bool:
    """Run one plug/unplug; a host-side failure is logged and retried next cycle."""
    try:
        action(instance)
    except HostError as exc:
        log.warning(
            "%s of instance %s failed, retrying next cycle: %s", what, instance.instance_id, exc
        )
        failed.append(instance.instance_id)
        return False
    return True


def _in_place(
    applier: Applier, found: dict[str, Plugged], wanted: dict[str, Plugged]
) -> list[tuple[Plugged, Plugged]]:
    """(found, wanted) pairs a hot-plug applier changes in place: same instance and name."""
    if not isinstance(applier, HotPlugApplier):
        return []
    return [
        (p, wanted[key])
        for key, p in sorted(found.items())
        if key in wanted and wanted[key] != p and wanted[key].name == p.name
    ]


def _settle(
    applier: Applier, found: dict[str, Plugged], wanted: dict[str, Plugged], failed: list[str]
) -> None:
    """Let a :class:`SettlingApplier` finish adopting the instances found as wanted."""
    if not isinstance(applier, SettlingApplier):
        return
    for key, p in sorted(wanted.items()):
        if found.get(key) == p:
            _attempt(applier.settle, "settle", p, failed)


def reconcile(
    applier: Applier, desired: Iterable[DesiredInstanceOut], incoming: Iterable[str] = ()
) -> Reconciliation:
    """Make the host match ``desired``: unplug what is not wanted (or changed), plug what is
    missing. Applying the same desired state twice does nothing the second time.

    With a :class:`HotPlugApplier`, an instance plugged under the same name whose ports or
    devices changed is updated in place (hot plug) instead of being unplugged and plugged.
    ``incoming`` instances (migrating here, not wanted yet) are left alone when found; a
    :class:`SettlingApplier` settles every instance found as wanted (a migrated guest's VFs).
    A failure on one instance does not stop the others (``failed``).
    """
    wanted = {i.id: Plugged.of(i) for i in desired}
    arriving = set(incoming) - set(wanted)
    found = {k: p for k, p in applier.found().items() if k not in arriving}
    failed: list[str] = []
    _settle(applier, found, wanted, failed)
    changed = _in_place(applier, found, wanted)
    updated = []
    for old, new in changed:
        assert isinstance(applier, HotPlugApplier)
        if _attempt(functools.partial(applier.update, old), "update", new, failed):
            updated.append(new.instance_id)
    moved = {old.instance_id for old, _ in changed}
    stale = [p for key, p in sorted(found.items()) if wanted.get(key) != p and key not in moved]
    unplugged = [p.instance_id for p in stale if _attempt(applier.unplug, "unplug", p, failed)]
    keep = {key for key, p in found.items() if wanted.get(key) == p} | moved
    missing = [p for key, p in sorted(wanted.items()) if key not in keep and key not in failed]
    plugged = [p.instance_id for p in missing if _attempt(applier.plug, "plug", p, failed)]
    return Reconciliation(tuple(plugged), tuple(unplugged), tuple(updated), tuple(failed))


# --- the loop -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentConfig:
    host: str
    specs: SpecList
    interval: float = 10.0
    #: every this many cycles the rescan drops its cache of static facts
    full_rescan_every: int = 60
    #: Neutron's physical_device_mappings / exclude_devices (None: spec tags only)
    mappings: AgentMappings | None = None
    #: the URI other hosts' agents migrate guests to (registered with the controller)
    hypervisor_uri: str | None = None


@dataclass(frozen=True, slots=True)
class CycleResult:
    """One cycle: whether it reported, heartbeated, and what the reconcile did."""

    ok: bool
    reported: bool = False
    heartbeat: bool = False
    reconciled: Reconciliation = Reconciliation()


class Migrations(Protocol):
    """Runs a live migration from this host (:class:`~pcifleet.host.migrator.Migrator`)."""

    def run(self, instance: DesiredInstanceOut) -> MigrationOutcome: ...


class Agent:
    """One host's agent over a client (socket or in-process) and a sysfs rescanner.

    With ``migrations``, the live migrations the desired state assigns to this host (as the
    source) are run before the reconcile and reported complete or aborted; an instance that
    left is not reconciled again here.
    """

    def __init__(
        self,
        client: PcifleetClient,
        rescanner: Rescanner,
        config: AgentConfig,
        applier: Applier | None = None,
        migrations: Migrations | None = None,
    ) -> None:
        self.client = client
        self.rescanner = rescanner
        self.config = config
        self.applier: Applier = applier if applier is not None else RecordingApplier()
        self.migrations = migrations
        self.generation: int | None = None
        self.cycles = 0
        #: True until a report succeeds for the current scan (so a failed report is retried)
        self._dirty = True

    # -- one cycle ---------------------------------------------------------------------------

    def cycle(self) -> CycleResult:
        """Scan, report or heartbeat, reconcile; transient failures are logged, not raised."""
        self.cycles += 1
        try:
            if self.generation is None:
                self.register()
            qualified = self._scan()
            reported, beat = self._report_or_beat(qualified)
            reconciled = self.reconcile()
        except (Unauthorized, Forbidden) as exc:
            raise AgentRefused(
                f"controller refused the token for host {self.config.host!r}: {exc} "
                "(check --token: it must be an agent token for this host)"
            ) from exc
        except HostError as exc:
            log.warning("host-side failure, retrying next cycle: %s", exc)
            return CycleResult(ok=False)
        except ScanFailed as exc:
            log.warning("scan failed, retrying next cycle: %s", exc.__cause__ or exc)
            return CycleResult(ok=False)
        except PcifleetError as exc:
            log.warning("controller call failed, retrying next cycle: %s", exc)
            return CycleResult(ok=False)
        return CycleResult(True, reported, beat, reconciled)

    def register(self) -> None:
        registered = self.client.register_host(self.config.host, self.config.hypervisor_uri)
        self.generation = registered.inventory_generation
        log.info("registered host %s (inventory generation %d)", registered.name, self.generation)

    def _scan(self) -> QualifiedScan:
        full = self.cycles % max(1, self.config.full_rescan_every) == 0
        try:
            current, changes = self.rescanner.rescan(full=full)
            qualified = qualify(current, self.config.specs)
        except (OSError, PcifleetError) as exc:
            self.rescanner.last = None
            self._dirty = True
            raise ScanFailed(str(exc)) from exc
        if not len(current):
            # every real host has at least a host bridge: an empty tree is a failed read (sysfs
            # not mounted, wrong --sysfs-root), never an inventory to report
            self.rescanner.last = None
            warnings = "; ".join(w.message for w in current.warnings) or "no PCI functions"
            raise ScanFailed(warnings)
        if not changes.empty:
            log.info("rescan: %s", describe(changes))
            self._dirty = True
        return qualified

    def _report_or_beat(self, qualified: QualifiedScan) -> tuple[bool, bool]:
        if self._dirty:
            self.report(qualified)
            self._dirty = False
            return True, False
        self.client.heartbeat(self.config.host)
        log.debug("heartbeat")
        return False, True

    def report(self, qualified: QualifiedScan) -> None:
        """Report the full inventory; a 409 re-reads the generation and tries again."""
        for attempt in range(1, REPORT_ATTEMPTS + 1):
            assert self.generation is not None
            try:
                result = self.client.report_inventory(
                    self.config.host, inventory_of(qualified, self.generation, self.config.mappings)
                )
            except ConcurrentUpdate:
                log.info("report raced another writer (attempt %d): re-reading", attempt)
                self.register()
                continue
            self.generation = result.inventory_generation
            log.info(
                "reported %d devices: +%d ~%d -%d (inventory generation %d)",
                len(qualified.assignable()),
                result.added,
                result.updated,
                result.removed,
                self.generation,
            )
            return
        raise ConcurrentUpdate(
            f"inventory report of {self.config.host!r} lost {REPORT_ATTEMPTS} races"
        )

    def migrate(self, instance: DesiredInstanceOut) -> bool:
        """Run the instance's migration and report it; True when the guest left this host."""
        if self.migrations is None or instance.migration is None:
            return False
        outcome = self.migrations.run(instance)
        try:
            if outcome.completed:
                self.client.complete_migration(instance.id)
            else:
                self.client.abort_migration(instance.id, outcome.reason or "aborted")
        except PcifleetError as exc:
            # retried next cycle: the executed migration is recognised, not run again
            log.warning("migration of %s: report failed: %s", instance.id, exc)
        return outcome.completed

    def reconcile(self) -> Reconciliation:
        desired = self.client.desired_state(self.config.host)
        staying = [i for i in desired.instances if not self.migrate(i)]
        done = reconcile(self.applier, staying, desired.incoming)
        if done.plugged or done.unplugged or done.updated:
            log.info(
                "reconciled: plugged %s unplugged %s updated %s",
                done.plugged,
                done.unplugged,
                done.updated,
            )
        return done

    # -- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, once: bool = False) -> int:
        """Cycle every ``interval`` seconds until ``stop`` is set; the process exit code."""
        log.info(
            "agent for host %s starting (interval %ss)", self.config.host, self.config.interval
        )
        while not stop.is_set():
            try:
                result = self.cycle()
            except AgentRefused as exc:
                log.error("%s", exc)
                return EXIT_REFUSED
            if once:
                return EXIT_OK if result.ok else EXIT_FAILED
            stop.wait(self.config.interval)
        log.info("agent for host %s stopped", self.config.host)
        return EXIT_OK


class ScanFailed(Exception):
    """Reading or qualifying sysfs failed this cycle (the cause is chained)."""


def describe(changes: ScanDiff) -> str:
    """One line for the log: counts, and the first few changed facts."""
    parts = [f"+{len(changes.added)} -{len(changes.removed)} ~{len(changes.changed)}"]
    facts = [f"{a} {c}" for a, cs in changes.changed for c in cs][:3]
    facts.extend(str(c) for c in changes.host[:2])
    return "; ".join(parts + facts)


__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "Agent",
    "AgentConfig",
    "AgentRefused",
    "Applier",
    "CycleResult",
    "HotPlugApplier",
    "Plugged",
    "Reconciliation",
    "RecordingApplier",
    "describe",
    "device_label",
    "device_tags",
    "inventory_of",
    "physnet_plan",
    "reconcile",
]
