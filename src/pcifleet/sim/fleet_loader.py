"""Put a workload into a controller database through the services, as a real deployment would.

- hosts register and report their inventory through :class:`InventoryService` (the path the
  agents use: one ``register_host`` and one full ``report`` per host, each its own committed
  transaction, the report diffed against the stored devices and compare-and-swapped on the
  host generation). Every host reports the template's assignable devices, qualified by the
  workload's Nova ``device_spec`` (:mod:`pcifleet.sim.workload`);
- the workload's Nova ``[pci] alias`` groups are loaded through :class:`GroupService`;
- each distinct flavor is created through :class:`FlavorService` under its registered name.

Every step is idempotent, so a replay may reuse a database (``--db-url``): a host that has
already reported the same inventory only gets a heartbeat, and existing flavors are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pcifleet.control.services.flavors import FlavorService
from pcifleet.control.services.groups import SOURCE_CONFIG, GroupService, LoadResult
from pcifleet.control.services.inventory import InventoryReport, InventoryService
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.domain.errors import AlreadyExists, InvalidWorkload
from pcifleet.domain.flavor import Flavor
from pcifleet.sim.workload import FLEET_FILE, Fleet, WorkloadHost

#: called after each host with (hosts done, hosts total)
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class FleetLoad:
    hosts: int
    devices: int
    #: seconds spent in register + report
    seconds: float
    #: slowest single register + report, in seconds
    slowest_s: float


def template_report(fleet: Fleet) -> InventoryReport:
    """What each host's agent reports: the assignable devices and the NUMA cells."""
    template = fleet.template
    if template.ram_allocation_ratio != 1.0:
        raise InvalidWorkload(
            f"ram_allocation_ratio {template.ram_allocation_ratio} cannot be reported "
            "(pcifleet hosts report their CPU allocation ratio only)",
            file=FLEET_FILE,
            field="host_template.ram_allocation_ratio",
            rule="supported",
        )
    return InventoryReport(
        devices=template.devices,
        cells=template.cells,
        cpu_allocation_ratio=template.cpu_allocation_ratio,
    )


def register_hosts(
    inventory: InventoryService,
    fleet: Fleet,
    hosts: Sequence[WorkloadHost] | None = None,
    progress: Progress | None = None,
) -> FleetLoad:
    """Register ``hosts`` (default: the whole fleet) and report their inventory, in order."""
    chosen = fleet.hosts if hosts is None else hosts
    report = template_report(fleet)
    began = time.perf_counter()
    slowest = 0.0
    for done, host in enumerate(chosen, 1):
        started = time.perf_counter()
        record = inventory.register_host(host.name)
        inventory.report(host.name, record.inventory_generation, report)
        slowest = max(slowest, time.perf_counter() - started)
        if progress is not None:
            progress(done, len(chosen))
    devices = len(report.devices) * len(chosen)
    return FleetLoad(len(chosen), devices, time.perf_counter() - began, slowest)


def load_groups(groups: GroupService, fleet: Fleet) -> LoadResult:
    """The workload's Nova aliases as public device groups (created or replaced)."""
    return groups.load(fleet.groups, source=SOURCE_CONFIG)


def create_flavors(flavors: FlavorService, wanted: Sequence[Flavor]) -> int:
    """Create the flavors that do not exist yet; returns how many were created.

    An existing flavor of the same name must be the same flavor (a reused database).
    """
    created = 0
    for flavor in wanted:
        try:
            flavors.create(LOCAL_ADMIN, flavor, description="benchmark workload flavor")
            created += 1
        except AlreadyExists:
            stored = flavors.get(flavor.name).flavor
            if stored != flavor:
                raise
    return created
