"""The demo scenario: a small simulated fleet driven end to end through the controller's API.

``pcifleet demo`` (see :mod:`pcifleet.cli.demo`) runs :func:`run_demo`: an embedded controller
on SQLite in a fresh data directory, served in-process to :class:`~pcifleet.client.PcifleetClient`
(no socket, no port). Everything after the controller's start goes through the HTTP API, as a
real deployment would use it:

1. **hosts**: each hardware profile (``sim/profiles/demo-*.toml``, two NUMA nodes each) is
   written as a fake sysfs tree under ``<data dir>/hosts/<name>``, scanned by the real
   discovery, qualified by Nova-style device specs, then registered and reported by a
   simulated agent holding an agent token for that host only;
2. **groups** and 3. **flavors** are created by the admin;
4. **networks and ports**: VLAN networks on the SR-IOV physical networks and one network
   with a VXLAN and a VLAN segment; ports with vnic types direct (trusted), macvtap (with a
   QoS rate a VF rounds to whole Mbit/s) and direct-physical; guests booted with those NICs,
   and each port's binding (host, VLAN, PCI slot, VF number, PF MAC);
5. **boots**: a mix of guests, one of which cannot be placed (its fault says why);
6. **explain**: a dry run of one more boot, with every host's outcome;
7. **live migration**: the plans of a guest with a macvtap port (moves transparently) and one
   with a direct port (unplugged and plugged back), then both migrated for real: the
   controller claims the destination, the demo reports the move complete in the agents'
   place, and the devices move;
8. **delete**: one guest is deleted and the utilization before and after shows its devices
   coming back.

The scenario is data (profiles, specs, groups, flavors, boots) and a tuple of small steps
(:data:`STEPS`) over one :class:`DemoContext`; each step returns a plain record that a
:class:`DemoView` renders (the CLI's Rich view, or nothing for ``--json``). No decision is
made here: placement, claims, bindings and migrations are the controller's.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, TypeVar, cast

from pcifleet.client import AsgiApp, InProcessTransport, PcifleetClient
from pcifleet.control.api.app import create_app
from pcifleet.control.api.schemas.devices import DeviceOut
from pcifleet.control.api.schemas.flavors import FlavorCreate, FlavorOut
from pcifleet.control.api.schemas.groups import GroupCreate, GroupOut
from pcifleet.control.api.schemas.hosts import HostDetailOut
from pcifleet.control.api.schemas.instances import ExplainOut, InstanceOut, NicIn
from pcifleet.control.api.schemas.migrations import MigrationOut, PlanOut
from pcifleet.control.api.schemas.networks import (
    NetworkCreate,
    NetworkOut,
    PortCreate,
    PortOut,
    QosIn,
    SegmentIn,
)
from pcifleet.control.container import Services, build_services
from pcifleet.control.services.principal import Role
from pcifleet.control.settings import settings_from_env, sqlite_url
from pcifleet.domain.device import DeviceState, DeviceType
from pcifleet.domain.errors import InvalidInput
from pcifleet.domain.spec import SpecList, parse_spec_list
from pcifleet.domain.vnic import VnicType
from pcifleet.host.agent import inventory_of
from pcifleet.host.discovery import scan
from pcifleet.host.model import PciFunction
from pcifleet.host.pciclass import DeviceKind as PciKind
from pcifleet.host.pciclass import PciClass
from pcifleet.host.qualify import QualifiedScan, qualify
from pcifleet.host.sysfs import SysfsReader
from pcifleet.network.segments import NetworkType
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import build_tree

T = TypeVar("T")

#: the base URL of the in-process controller (never resolved: the transport is the app)
DEMO_URL: Final = "http://pcifleet.demo"

# --- the scenario, as data -------------------------------------------------------------------

#: shipped hardware profiles of the demo fleet (``sim/profiles/<name>.toml``)
DEMO_PROFILES: Final = (
    "demo-gpu-a100",
    "demo-gpu-h100",
    "demo-nfv-e810-qat",
    "demo-nfv-x710-qat",
    "demo-storage-nvme",
)

#: the agents' ``[pci] device_spec`` values, exactly as an operator would paste them from Nova:
#: NICs tagged with their physical network (PFs too: direct-physical ports take a whole PF,
#: and a VF's binding carries its PF's MAC), the E810 VFs trusted (a trusted port needs one)
DEVICE_SPECS: Final = (
    '{"exclude": true, "devname": "eno1"}',
    '{"vendor_id": "15b3", "physical_network": "physnet1"}',
    '{"vendor_id": "8086", "product_id": "1889", "physical_network": "physnet2", '
    '"trusted": "true"}',
    '{"vendor_id": "8086", "product_id": "154c", "physical_network": "physnet2"}',
    '{"vendor_id": "8086", "product_id": "159b", "physical_network": "physnet2"}',
    '{"vendor_id": "8086", "product_id": "1572", "physical_network": "physnet2"}',
    '{"vendor_id": "10de"}',
    '{"vendor_id": "8086", "product_id": "4941"}',
    '{"vendor_id": "8086", "product_id": "37c9"}',
    '{"vendor_id": "144d", "product_id": "a80a"}',
)


def _group(name: str, description: str, device_type: str, *ids: tuple[str, str]) -> GroupCreate:
    match = [{"vendor_id": vendor, "product_id": product} for vendor, product in ids]
    return GroupCreate.model_validate(
        {"name": name, "description": description, "device_type": device_type, "match": match}
    )


#: the device groups (Nova's aliases) tenants ask for in ``pci_passthrough:alias``
DEMO_GROUPS: Final = (
    _group("gpu", "NVIDIA data-center GPU", "type-PCI", ("10de", "20b5"), ("10de", "2330")),
    _group("qat", "Intel QuickAssist VF", "type-VF", ("8086", "4941"), ("8086", "37c9")),
    _group("nvme", "Local NVMe drive", "type-PCI", ("144d", "a80a")),
)

_ALIAS: Final = "pci_passthrough:alias"
_PCI_NUMA: Final = "hw:pci_numa_affinity_policy"
_DEDICATED: Final = {"hw:cpu_policy": "dedicated"}


def _flavor(name: str, vcpus: int, memory_gb: int, **extra_specs: str) -> FlavorCreate:
    return FlavorCreate(
        name=name, vcpus=vcpus, memory_mb=memory_gb * 1024, extra_specs=dict(extra_specs)
    )


#: flavors with Nova extra specs (``hw:numa_nodes`` and friends, unchanged from Nova)
DEMO_FLAVORS: Final = (
    _flavor("gpu.small", 8, 32, **{_ALIAS: "gpu:1", _PCI_NUMA: "required"}, **_DEDICATED),
    _flavor(
        "gpu.dual",
        16,
        64,
        **{_ALIAS: "gpu:2", _PCI_NUMA: "required", "hw:numa_nodes": "2"},
        **_DEDICATED,
    ),
    _flavor(
        "gpu.quad",
        32,
        128,
        **{_ALIAS: "gpu:4", _PCI_NUMA: "required", "hw:numa_nodes": "1"},
        **_DEDICATED,
    ),
    _flavor("nfv.qat", 4, 8, **{_ALIAS: "qat:2", _PCI_NUMA: "required"}, **_DEDICATED),
    _flavor("storage.nvme", 4, 16, **{_ALIAS: "nvme:1", _PCI_NUMA: "preferred"}),
    _flavor("general", 2, 4),
)


@dataclass(frozen=True, slots=True)
class BootPlan:
    name: str
    flavor: str
    project: str


#: in order; ``train-huge`` asks for 4 GPUs on one NUMA node, which no host has
DEMO_BOOTS: Final = (
    BootPlan("train-huge", "gpu.quad", "ml"),
    BootPlan("train-1", "gpu.small", "ml"),
    BootPlan("train-2", "gpu.small", "ml"),
    BootPlan("render-1", "gpu.dual", "ml"),
    BootPlan("vnf-fw-1", "nfv.qat", "nfv"),
    BootPlan("vnf-fw-2", "nfv.qat", "nfv"),
    BootPlan("db-1", "storage.nvme", "storage"),
    BootPlan("db-2", "storage.nvme", "storage"),
    BootPlan("web-1", "general", "web"),
)
#: the dry run of the explain step, and the guest deleted in the last step
EXPLAIN_BOOT: Final = BootPlan("render-2", "gpu.dual", "ml")
DELETE_INSTANCE: Final = "render-1"

#: the project owning the demo's networks (shared with every project)
NET_PROJECT: Final = "nfv"
_VLAN1: Final = SegmentIn(network_type=NetworkType.VLAN, physical_network="physnet1")
_VLAN2: Final = SegmentIn(network_type=NetworkType.VLAN, physical_network="physnet2")
_VXLAN: Final = SegmentIn(network_type=NetworkType.VXLAN)


def _network(name: str, *segments: SegmentIn) -> NetworkCreate:
    return NetworkCreate(name=name, segments=list(segments), project=NET_PROJECT, shared=True)


#: VLAN networks on both SR-IOV physical networks, and one with a VXLAN and a VLAN segment
#: (SR-IOV ports on it use the VLAN segment; VMs on other hosts could use the VXLAN one)
DEMO_NETWORKS: Final = (
    _network("sriov-phys1", _VLAN1),
    _network("sriov-phys2", _VLAN2),
    _network("tenant-multi", _VXLAN, _VLAN2),
)

#: ports created before the boots: a trusted direct port, a macvtap port with a QoS rate
#: (1500 kbit/s: a VF enforces whole Mbit/s, the port says so) and a whole PF
DEMO_PORTS: Final = (
    PortCreate(network="sriov-phys2", name="fw-uplink", vnic_type=VnicType.DIRECT, trusted=True),
    PortCreate(
        network="tenant-multi",
        name="fw-mgmt",
        vnic_type=VnicType.MACVTAP,
        qos=QosIn(max_kbps=1500),
    ),
    PortCreate(network="sriov-phys1", name="gw-pf", vnic_type=VnicType.DIRECT_PHYSICAL),
)


@dataclass(frozen=True, slots=True)
class NicPlan:
    """One NIC of a boot: a port made above (by name), or a new port on a network."""

    port: str | None = None
    net: str | None = None
    vnic_type: VnicType = VnicType.NORMAL


@dataclass(frozen=True, slots=True)
class NicBootPlan:
    name: str
    flavor: str
    project: str
    nics: tuple[NicPlan, ...]


#: guests with SR-IOV NICs; ``edge-fw-1`` mixes direct and macvtap (the boot warns)
DEMO_NIC_BOOTS: Final = (
    NicBootPlan("edge-fw-1", "general", NET_PROJECT, (NicPlan("fw-uplink"), NicPlan("fw-mgmt"))),
    NicBootPlan(
        "edge-lb-1",
        "general",
        NET_PROJECT,
        (NicPlan(net="tenant-multi", vnic_type=VnicType.MACVTAP),),
    ),
    NicBootPlan(
        "edge-dpdk-1",
        "general",
        NET_PROJECT,
        (NicPlan(net="sriov-phys1", vnic_type=VnicType.DIRECT),),
    ),
    NicBootPlan("storage-gw-1", "general", NET_PROJECT, (NicPlan("gw-pf"),)),
)

#: live-migrated: a guest with a macvtap port (moves transparently) and one with a direct
#: port (unplugged before the move, plugged back on the destination)
MIGRATE_INSTANCES: Final = ("edge-lb-1", "edge-dpdk-1")

#: utilization columns: NIC VFs, GPUs, accelerators (QAT VFs), NVMe drives
NIC_VFS: Final = "NIC VFs"
DEVICE_KINDS: Final = (NIC_VFS, "GPUs", "accelerators", "NVMe")
_KIND_COLUMN: Final = {
    PciKind.DISPLAY: "GPUs",
    PciKind.ACCELERATOR: "accelerators",
    PciKind.NVME: "NVMe",
}
_SHORT_KIND: Final = {
    PciKind.NETWORK: "NIC",
    PciKind.DISPLAY: "GPU",
    PciKind.ACCELERATOR: "accelerator",
    PciKind.NVME: "NVMe",
}
_IN_USE: Final = frozenset({DeviceState.CLAIMED, DeviceState.ALLOCATED})
ACTIVE: Final = "active"


# --- what the steps return: plain records a DemoView renders and --json summarizes -----------


@dataclass(frozen=True, slots=True)
class ControllerStarted:
    data_dir: Path
    database_url: str
    version: str
    auth_mode: str


@dataclass(frozen=True, slots=True)
class SimulatedHost:
    """One simulated host as its agent saw and reported it."""

    name: str
    profile: str
    #: the fake sysfs tree (``pcifleet host scan --sysfs-root`` reads it)
    root: Path
    functions: int
    assignable: int
    #: functions the device specs exclude (the management NIC): "0000:11:00.0 (eno1)"
    excluded: tuple[str, ...]
    cells: int
    cpus: int
    #: assignable devices by kind: "16x NIC VF physnet1", "2x GPU"
    inventory: tuple[str, ...]
    #: the controller's answer to the report
    added: int
    generation: int


@dataclass(frozen=True, slots=True)
class HostsReported:
    hosts: tuple[SimulatedHost, ...]
    specs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GroupsCreated:
    groups: tuple[GroupOut, ...]


@dataclass(frozen=True, slots=True)
class FlavorsCreated:
    flavors: tuple[FlavorOut, ...]


@dataclass(frozen=True, slots=True)
class GuestPorts:
    """A guest booted with NICs, and its ports as the API shows them after the boot."""

    instance: InstanceOut
    ports: tuple[PortOut, ...]


@dataclass(frozen=True, slots=True)
class NetworksAndPorts:
    networks: tuple[NetworkOut, ...]
    #: the ports made before the boots, as created (unbound, with their notes)
    ports: tuple[PortOut, ...]
    guests: tuple[GuestPorts, ...]


@dataclass(frozen=True, slots=True)
class BootsDone:
    """Every boot's answer, in boot order: ``active`` with a placement, or ``error``."""

    instances: tuple[InstanceOut, ...]

    @property
    def placed(self) -> tuple[InstanceOut, ...]:
        return tuple(vm for vm in self.instances if vm.state == ACTIVE)

    @property
    def failed(self) -> tuple[InstanceOut, ...]:
        return tuple(vm for vm in self.instances if vm.state != ACTIVE)


@dataclass(frozen=True, slots=True)
class CellUsage:
    """One host NUMA cell: vCPUs and devices of each kind, used (by instances) of total."""

    host: str
    cell: int
    vcpus_used: int
    cpus: int
    #: kind (see :data:`DEVICE_KINDS`) -> (used, total)
    devices: Mapping[str, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class Utilization:
    cells: tuple[CellUsage, ...]
    #: vCPUs of guests without a NUMA topology (they float over the host's cells), per host
    floating_vcpus: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Explained:
    name: str
    explanation: ExplainOut


@dataclass(frozen=True, slots=True)
class Migrated:
    """One guest's live migration, as the API showed it at each stage."""

    before: InstanceOut
    #: the dry run's plan (nothing claimed)
    plan: PlanOut
    #: the record right after the destination was claimed (state ``migrating``)
    started: MigrationOut
    #: what the guest held while in flight: (host, address, state), both ends
    in_flight: tuple[tuple[str, str, str], ...]
    #: the record after the agents' report (``completed``)
    finished: MigrationOut
    after: InstanceOut
    ports: tuple[PortOut, ...]
    #: the source devices' states after the move (address -> state)
    source_states: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Migrations:
    guests: tuple[Migrated, ...]


@dataclass(frozen=True, slots=True)
class FreedDevice:
    address: str
    group: str
    #: the device's state after the delete, as the API reports it
    state: str


@dataclass(frozen=True, slots=True)
class Deleted:
    instance: InstanceOut
    freed: tuple[FreedDevice, ...]
    before: Utilization
    after: Utilization


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the scenario: a key (for --json), a title (for progress), the work."""

    key: str
    title: str
    run: Callable[[DemoContext], object]


class DemoView(Protocol):
    """What the runner tells its audience (the CLI's Rich view; nothing for --json)."""

    def started(self, step: Step) -> None: ...

    def progress(self, message: str) -> None: ...

    def finished(self, step: Step, result: object, seconds: float) -> None: ...


class QuietView:
    """A view that shows nothing (``--json``, tests)."""

    def started(self, step: Step) -> None:
        return None

    def progress(self, message: str) -> None:
        return None

    def finished(self, step: Step, result: object, seconds: float) -> None:
        return None


# --- the context: the controller, its admin client, what the steps learnt --------------------


@dataclass(slots=True)
class DemoContext:
    data_dir: Path
    services: Services
    transport: InProcessTransport
    admin: PcifleetClient
    view: DemoView
    specs: SpecList
    agents: dict[str, PcifleetClient] = field(default_factory=dict)
    results: dict[str, object] = field(default_factory=dict)

    def client(self, token: str) -> PcifleetClient:
        """Another caller of the same in-process controller (an agent, a project member)."""
        return PcifleetClient(DEMO_URL, token, transport=self.transport)

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()
        self.admin.close()
        self.transport.close()
        self.services.close()


def prepare_data_dir(data_dir: Path | None) -> Path:
    """A fresh directory: a new temporary one, or ``data_dir`` if it is absent or empty.

    The demo never reuses a database: a non-empty directory is refused rather than mixed
    with an earlier run.
    """
    if data_dir is None:
        return Path(tempfile.mkdtemp(prefix="pcifleet-demo-"))
    path = data_dir.expanduser().resolve()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InvalidInput(
            f"--data-dir {path}: must be a new or empty directory (the demo starts from "
            "scratch; pass another one, or none for a temporary directory)",
            field="data_dir",
            rule="fresh",
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_demo(data_dir: Path, view: DemoView) -> DemoContext:
    """Start the embedded controller on SQLite in ``data_dir`` and bootstrap an admin.

    The admin token is created directly in the database, as ``pcifleet token create`` does
    on a fresh controller; every later call goes through the HTTP API with a bearer token.
    """
    settings = settings_from_env(os.environ, data_dir=data_dir, database_url=sqlite_url(data_dir))
    services = build_services(settings, migrate_schema=True)
    _, secret = services.tokens.create(Role.ADMIN, name="demo-admin")
    # FastAPI's __call__ is typed with MutableMapping scopes; the client's AsgiApp is looser
    transport = InProcessTransport(cast(AsgiApp, create_app(services)))
    admin = PcifleetClient(DEMO_URL, secret, transport=transport)
    return DemoContext(data_dir, services, transport, admin, view, parse_spec_list(DEVICE_SPECS))


# --- steps -----------------------------------------------------------------------------------


def start_controller(ctx: DemoContext) -> ControllerStarted:
    health = ctx.admin.health()
    return ControllerStarted(
        ctx.data_dir, ctx.services.settings.database_url, health.version, health.auth_mode
    )


def report_hosts(ctx: DemoContext) -> HostsReported:
    """Each profile becomes a fake sysfs tree, is discovered, qualified and reported."""
    hosts = []
    for profile in DEMO_PROFILES:
        ctx.view.progress(f"host {profile}: building sysfs, scanning, reporting")
        hosts.append(simulate_host(ctx, profile))
    return HostsReported(tuple(hosts), DEVICE_SPECS)


def simulate_host(ctx: DemoContext, profile_name: str) -> SimulatedHost:
    """What a host agent does at start: scan, qualify, register, report (its own token)."""
    profile = load_shipped(profile_name)
    built = build_tree(profile, ctx.data_dir / "hosts" / profile.hostname)
    qualified = qualify(scan(SysfsReader.for_directory(built.root)), ctx.specs)
    token = ctx.admin.create_token("agent", host=profile.hostname, name=f"agent-{profile_name}")
    agent = ctx.agents[profile.hostname] = ctx.client(token.token)
    registered = agent.register_host(profile.hostname)
    report = agent.report_inventory(
        profile.hostname, inventory_of(qualified, registered.inventory_generation)
    )
    cells = qualified.scan.numa_cells
    return SimulatedHost(
        name=profile.hostname,
        profile=profile_name,
        root=built.root,
        functions=len(qualified.scan),
        assignable=len(qualified.assignable()),
        excluded=tuple(_named(v.function) for v in qualified.verdicts if v.excluded),
        cells=len(cells),
        cpus=sum(len(cell.cpus) for cell in cells),
        inventory=inventory_lines(qualified),
        added=report.added,
        generation=report.generation,
    )


def _named(function: PciFunction) -> str:
    names = ", ".join(function.netdev_names)
    return f"{function.address} ({names})" if names else str(function.address)


def inventory_lines(qualified: QualifiedScan) -> tuple[str, ...]:
    """What the host offers, shortly: ``16x NIC VF physnet1``, ``2x GPU``, in address order."""
    counts: dict[str, int] = {}
    for verdict in qualified.verdicts:
        if verdict.assignable:
            key = short_kind(verdict.function, verdict.device.tags.get("physical_network"))
            counts[key] = counts.get(key, 0) + 1
    return tuple(f"{n}x {key}" for key, n in counts.items())


def short_kind(function: PciFunction, physnet: str | None) -> str:
    kind = _SHORT_KIND.get(function.pci_class.kind, "device") if function.pci_class else "device"
    role = (
        "" if function.role is DeviceType.PCI else f" {function.role.value.removeprefix('type-')}"
    )
    return f"{kind}{role}" + (f" {physnet}" if physnet else "")


def create_groups(ctx: DemoContext) -> GroupsCreated:
    return GroupsCreated(tuple(ctx.admin.create_group(group) for group in DEMO_GROUPS))


def create_flavors(ctx: DemoContext) -> FlavorsCreated:
    return FlavorsCreated(tuple(ctx.admin.create_flavor(flavor) for flavor in DEMO_FLAVORS))


def create_networks_and_ports(ctx: DemoContext) -> NetworksAndPorts:
    """Networks, ports, and guests booted with them; the bindings come from the API."""
    networks = tuple(ctx.admin.create_network(network) for network in DEMO_NETWORKS)
    ports = tuple(ctx.admin.create_port(port) for port in DEMO_PORTS)
    by_name = {port.name: port.id for port in ports}
    guests = []
    for plan in DEMO_NIC_BOOTS:
        ctx.view.progress(f"booting {plan.name} with {len(plan.nics)} NIC(s)")
        nics = [
            NicIn(port=by_name[nic.port])
            if nic.port
            else NicIn(net=nic.net, vnic_type=nic.vnic_type)
            for nic in plan.nics
        ]
        vm = ctx.admin.boot(plan.name, plan.flavor, project=plan.project, nics=nics)
        guests.append(GuestPorts(vm, tuple(ctx.admin.list_ports(instance=vm.id))))
    return NetworksAndPorts(networks, ports, tuple(guests))


def boot_instances(ctx: DemoContext) -> BootsDone:
    """Boot every planned guest as the admin on behalf of its project."""
    booted = []
    for plan in DEMO_BOOTS:
        ctx.view.progress(f"booting {plan.name} ({plan.flavor}, project {plan.project})")
        booted.append(ctx.admin.boot(plan.name, plan.flavor, project=plan.project))
    return BootsDone(tuple(booted))


def measure_utilization(ctx: DemoContext) -> Utilization:
    """Per host and NUMA cell: vCPUs of placed guests, devices of each kind in use."""
    live = [vm for vm in ctx.admin.list_instances() if vm.state == ACTIVE and vm.host]
    cells: list[CellUsage] = []
    floating: dict[str, int] = {}
    for summary in ctx.admin.list_hosts():
        host = ctx.admin.show_host(summary.name)
        guests = [vm for vm in live if vm.host == host.name]
        cells.extend(cell_usage(host, guests))
        floating[host.name] = sum(vm.vcpus for vm in guests if not vm.cells)
    return Utilization(tuple(cells), floating)


def cell_usage(host: HostDetailOut, guests: Sequence[InstanceOut]) -> list[CellUsage]:
    found = []
    for cell in host.cells:
        used = sum(c.vcpus for vm in guests for c in vm.cells if c.host_cell == cell.id)
        devices = [d for d in host.devices if d.numa_node == cell.id]
        found.append(CellUsage(host.name, cell.id, used, len(cell.cpus), device_counts(devices)))
    return found


def device_kind(device: DeviceOut) -> str | None:
    """Which utilization column a device counts in (NIC PFs and other devices: none)."""
    if device.class_code is None:
        return None
    kind = PciClass.parse(device.class_code).kind
    if kind is PciKind.NETWORK:
        return NIC_VFS if device.dev_type is DeviceType.VF else None
    return _KIND_COLUMN.get(kind)


def device_counts(devices: Sequence[DeviceOut]) -> dict[str, tuple[int, int]]:
    counts = {kind: (0, 0) for kind in DEVICE_KINDS}
    for device in devices:
        kind = device_kind(device)
        if kind is None or device.state is DeviceState.REMOVED:
            continue
        used, total = counts[kind]
        counts[kind] = (used + (device.state in _IN_USE), total + 1)
    return counts


def explain_boot(ctx: DemoContext) -> Explained:
    """A dry run of one more boot: the host it would get and every host's outcome."""
    plan = EXPLAIN_BOOT
    hosts = len(DEMO_PROFILES)
    result = ctx.admin.explain(plan.flavor, project=plan.project, examples=hosts)
    return Explained(plan.name, result)


def migrate_instances(ctx: DemoContext) -> Migrations:
    """Plan, then live-migrate each of :data:`MIGRATE_INSTANCES` through the API.

    The controller chooses the destination and claims it; the agents' part (configure the
    destination VFs, unplug the direct ports, move the guest, plug them back) is what
    :func:`pcifleet.host.migrate.execute_migration` does on a real source host; here the
    demo reports its outcome (``complete``) in their place.
    """
    by_name = {vm.name: vm for vm in ctx.admin.list_instances()}
    return Migrations(tuple(migrate_one(ctx, by_name[name]) for name in MIGRATE_INSTANCES))


def _held(ctx: DemoContext, instance_id: str) -> tuple[tuple[str, str, str], ...]:
    devices = ctx.admin.list_devices(instance_id=instance_id)
    return tuple(sorted((d.host, d.address, str(d.state)) for d in devices))


def migrate_one(ctx: DemoContext, vm: InstanceOut) -> Migrated:
    ctx.view.progress(f"planning the migration of {vm.name} (dry run)")
    plan = ctx.admin.migrate(vm.id, dry_run=True).plan
    ctx.view.progress(f"migrating {vm.name} from {vm.host}")
    started = ctx.admin.migrate(vm.id).migration
    if started is None:
        raise InvalidInput(
            f"the migration of {vm.name} was not started", field="migration", rule="started"
        )
    in_flight = _held(ctx, vm.id)
    finished = ctx.admin.complete_migration(vm.id)
    sources = {a for r in vm.requests for a in r.devices}
    states = {
        d.address: str(d.state)
        for d in ctx.admin.list_devices(host=vm.host)
        if d.address in sources
    }
    after = ctx.admin.show_instance(vm.id)
    ports = tuple(ctx.admin.list_ports(instance=vm.id))
    return Migrated(vm, plan, started, in_flight, finished, after, ports, states)


def delete_instance(ctx: DemoContext) -> Deleted:
    """Delete one guest; its devices come back (shown before and after)."""
    victim = next(vm for vm in ctx.admin.list_instances() if vm.name == DELETE_INSTANCE)
    before = measure_utilization(ctx)
    ctx.view.progress(f"deleting {victim.name} on {victim.host}")
    deleted = ctx.admin.delete_instance(victim.id)
    states = {d.address: d.state for d in ctx.admin.list_devices(host=victim.host)}
    freed = tuple(
        FreedDevice(address, request.requester, str(states.get(address, "gone")))
        for request in victim.requests
        for address in request.devices
    )
    return Deleted(deleted, freed, before, measure_utilization(ctx))


#: the scenario, in order
STEPS: Final = (
    Step("controller", "Starting the embedded controller", start_controller),
    Step("hosts", "Simulating hosts: sysfs, discovery, device specs, inventory", report_hosts),
    Step("groups", "Creating device groups", create_groups),
    Step("flavors", "Creating flavors", create_flavors),
    Step(
        "networks",
        "Creating networks and ports, booting guests with NICs",
        create_networks_and_ports,
    ),
    Step("boots", "Booting instances", boot_instances),
    Step("utilization", "Measuring per-host/NUMA utilization", measure_utilization),
    Step("explain", f"Explaining a boot of {EXPLAIN_BOOT.flavor}", explain_boot),
    Step("migrate", "Live-migrating guests with SR-IOV ports", migrate_instances),
    Step("delete", f"Deleting {DELETE_INSTANCE}", delete_instance),
)


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoRun:
    data_dir: Path
    results: Mapping[str, object]
    seconds: float


def run_demo(
    data_dir: Path | None = None,
    view: DemoView | None = None,
    steps: Sequence[Step] = STEPS,
) -> DemoRun:
    """Run ``steps`` against a fresh controller in ``data_dir`` (a temporary one if None)."""
    chosen = prepare_data_dir(data_dir)
    audience = view or QuietView()
    started = time.perf_counter()
    ctx = open_demo(chosen, audience)
    try:
        for step in steps:
            audience.started(step)
            begin = time.perf_counter()
            result = ctx.results[step.key] = step.run(ctx)
            audience.finished(step, result, time.perf_counter() - begin)
    finally:
        ctx.close()
    return DemoRun(chosen, dict(ctx.results), time.perf_counter() - started)


# --- the machine-readable summary (--json) ---------------------------------------------------


def summary(run: DemoRun) -> dict[str, object]:
    """Hosts, networks, ports and their bindings, placements, failures, the explanation, the
    migrations, the delete and utilization, as plain JSON."""
    hosts = _result(run, "hosts", HostsReported)
    boots = _result(run, "boots", BootsDone)
    networks = _result(run, "networks", NetworksAndPorts)
    deleted = _result(run, "delete", Deleted)
    return {
        "data_dir": str(run.data_dir),
        "seconds": round(run.seconds, 3),
        "hosts": [_host_json(host) for host in hosts.hosts],
        "groups": [g.name for g in _result(run, "groups", GroupsCreated).groups],
        "flavors": [f.name for f in _result(run, "flavors", FlavorsCreated).flavors],
        "networks": [n.model_dump(mode="json", include=_NETWORK_KEYS) for n in networks.networks],
        "ports": [_port_json(port, guest) for guest in networks.guests for port in guest.ports],
        "bindings": [
            _binding_json(port, guest) for guest in networks.guests for port in guest.ports
        ],
        "mixed_vnic_warnings": {
            g.instance.name: list(g.instance.warnings)
            for g in networks.guests
            if g.instance.warnings
        },
        "placements": [_placement_json(vm) for vm in boots.placed],
        "failures": [_failure_json(vm) for vm in boots.failed],
        "explain": _result(run, "explain", Explained).explanation.model_dump(mode="json"),
        "migrations": [_migration_json(m) for m in _result(run, "migrate", Migrations).guests],
        "delete": {
            "instance": deleted.instance.name,
            "host": deleted.instance.host,
            "state": deleted.instance.state,
            "freed": [
                {"address": f.address, "group": f.group, "state": f.state} for f in deleted.freed
            ],
        },
        "utilization": {
            "before_delete": _utilization_json(deleted.before),
            "after_delete": _utilization_json(deleted.after),
        },
    }


def _result(run: DemoRun, key: str, kind: type[T]) -> T:
    found = run.results.get(key)
    if not isinstance(found, kind):
        raise InvalidInput(f"the demo has no {key!r} step result", field=key, rule="missing")
    return found


def _host_json(host: SimulatedHost) -> dict[str, object]:
    return {
        "name": host.name,
        "profile": host.profile,
        "sysfs_root": str(host.root),
        "functions": host.functions,
        "assignable": host.assignable,
        "excluded": list(host.excluded),
        "numa_cells": host.cells,
        "cpus": host.cpus,
    }


_NETWORK_KEYS: Final = {"id", "name", "project", "shared", "segments"}


def _port_json(port: PortOut, guest: GuestPorts) -> dict[str, object]:
    return {
        "id": port.id,
        "name": port.name,
        "instance": guest.instance.name,
        "network_id": port.network_id,
        "vnic_type": port.vnic_type,
        "mac_address": port.mac_address,
        "trusted": port.trusted,
        "qos_max_kbps": port.qos_max_kbps,
        "vf": None if port.vf is None else port.vf.model_dump(mode="json"),
        "notes": list(port.notes),
    }


def _binding_json(port: PortOut, guest: GuestPorts) -> dict[str, object]:
    binding = port.binding
    profile = binding.profile if binding else {}
    return {
        "instance": guest.instance.name,
        "port": port.id,
        "vnic_type": port.vnic_type,
        "vif_type": binding.vif_type if binding else port.vif_type,
        "vlan": binding.vif_details.get("vlan") if binding else None,
        "host": binding.host if binding else None,
        **{key: profile.get(key) for key in _PROFILE_KEYS},
    }


_PROFILE_KEYS: Final = (
    "pci_slot",
    "pci_vendor_info",
    "vf_num",
    "physical_network",
    "pf_mac_address",
    "device_mac_address",
    "trusted",
)


def _migration_json(migrated: Migrated) -> dict[str, object]:
    return {
        "instance": migrated.before.name,
        "id": migrated.finished.id,
        "state": migrated.finished.state,
        "source_host": migrated.finished.source_host,
        "destination_host": migrated.finished.destination_host,
        "plan": migrated.plan.model_dump(mode="json"),
        "devices_before": {r.requester: list(r.devices) for r in migrated.before.requests},
        "devices_after": {r.requester: list(r.devices) for r in migrated.after.requests},
        "source_states_after": dict(migrated.source_states),
    }


def _placement_json(vm: InstanceOut) -> dict[str, object]:
    return {
        "instance": vm.name,
        "id": vm.id,
        "project": vm.project,
        "flavor": vm.flavor,
        "host": vm.host,
        "cells": [c.model_dump(mode="json") for c in vm.cells],
        "devices": {r.requester: list(r.devices) for r in vm.requests},
    }


def _failure_json(vm: InstanceOut) -> dict[str, object]:
    fault = vm.fault
    return {
        "instance": vm.name,
        "flavor": vm.flavor,
        "state": vm.state,
        "code": fault.code if fault else None,
        "reason": fault.message if fault else None,
        "details": list(fault.details) if fault else [],
    }


def _utilization_json(usage: Utilization) -> dict[str, object]:
    cells = [
        {
            "host": cell.host,
            "cell": cell.cell,
            "vcpus_used": cell.vcpus_used,
            "cpus": cell.cpus,
            "devices": {k: {"used": u, "total": t} for k, (u, t) in cell.devices.items()},
        }
        for cell in usage.cells
    ]
    return {"cells": cells, "floating_vcpus": dict(usage.floating_vcpus)}
