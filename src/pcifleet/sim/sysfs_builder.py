"""Materialize a hardware profile as a fake sysfs tree laid out like the kernel's.

Placement follows real machines: each NUMA node has its own PCIe root bus
(``sys/devices/pci0000:<bus>``, ``numa_node`` from ACPI ``_PXM``); every card sits behind its
own root port (``<bus>:<port>.0``) whose secondary bus is the next free bus number; PFs are
functions 0..n-1 of the card and VFs follow at the routing ids of the SR-IOV capability
(``sriov_offset`` + ``sriov_stride`` x index), so with ARI the 9th function is the next slot and
very large VF counts spill onto the next bus numbers, which the root port reserves. Cards whose
NUMA node is unknown (-1) and ``onboard`` functions hang off bus 0 (``pci0000:00``), as on the
QEMU q35 capture.

The plan is computed first (pure, fast, and validated: overlapping buses, duplicate netdev
names or addresses are ``InvalidProfile`` errors), then written in one pass.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidProfile
from pcifleet.sim.catalogue import DeviceModel, PciLink, VfLayout
from pcifleet.sim.profile import (
    UNKNOWN_NODE,
    VFIO_PCI,
    CardSpec,
    HardwareProfile,
    HugePageSpec,
    NumaNodeSpec,
    OnboardSpec,
)
from pcifleet.sim.sysfs_layout import (
    FunctionPlan,
    NetdevPlan,
    PciIds,
    SriovPlan,
    SysfsLayout,
    cpulist,
    cpumask,
)

Role = Literal["PF", "VF", "PCI"]

DEFAULT_HUGEPAGE_SIZES: Final = (2048, 1048576)
#: what a real VF shows: its PCIe Link Status register is reserved (zero)
UNKNOWN_LINK: Final = PciLink("Unknown", 0)
_OUI: Final = {0x8086: "3c:fd:fe", 0x15B3: "b8:ce:f6", 0x1AF4: "52:54:00", 0x1B36: "52:54:00"}


@dataclass(frozen=True, slots=True)
class BuiltFunction:
    """What the builder put in the tree for one function (for tests and benchmarks)."""

    address: PciAddress
    role: Role
    model: str
    numa_node: int
    driver: str | None
    pf: PciAddress | None
    vf_index: int | None
    netdevs: tuple[str, ...]
    #: device directory relative to ``<root>/sys``
    path: str
    iommu_group: int | None


@dataclass(frozen=True, slots=True)
class BuiltHost:
    """A materialized host: point discovery at ``sys_root`` (or at ``root`` with ``sys/``)."""

    profile: HardwareProfile
    root: Path
    functions: tuple[BuiltFunction, ...]

    @property
    def sys_root(self) -> Path:
        return self.root / "sys"

    def function(self, address: PciAddress | str) -> BuiltFunction:
        wanted = PciAddress.parse(address) if isinstance(address, str) else address
        for function in self.functions:
            if function.address == wanted:
                return function
        raise KeyError(str(wanted))

    def pfs(self) -> tuple[BuiltFunction, ...]:
        return tuple(f for f in self.functions if f.role == "PF")

    def vfs_of(self, pf: PciAddress) -> tuple[BuiltFunction, ...]:
        found = (f for f in self.functions if f.pf == pf)
        return tuple(sorted(found, key=lambda f: f.vf_index or 0))


def build_tree(profile: HardwareProfile, root: Path) -> BuiltHost:
    """Write ``<root>/sys`` for ``profile`` and return what was built."""
    planner = _Planner(profile)
    plans = planner.plan()
    layout = SysfsLayout(root / "sys")
    layout.ensure_skeleton()
    _write_loopback(root / "sys")
    for domain, bus in planner.root_buses:
        layout.ensure_root_bus(domain, bus)
    for plan in plans:
        layout.add_function(plan.function)
    for plan in plans:
        if plan.function.physfn is not None and plan.vf_index is not None:
            layout.add_virtfn_link(_parent_path(plan), plan.vf_index, plan.function.address)
    _write_system(root / "sys", profile, planner.node_cpus)
    return BuiltHost(profile, root, tuple(_built(p) for p in plans))


def plan_functions(profile: HardwareProfile) -> tuple[FunctionPlan, ...]:
    """The function plans of ``profile`` without touching the disk (validates the layout)."""
    return tuple(p.function for p in _Planner(profile).plan())


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class _Planned:
    function: FunctionPlan
    role: Role
    model: str
    vf_index: int | None = None
    pf_path: str | None = None


def _parent_path(plan: _Planned) -> str:
    assert plan.pf_path is not None
    return plan.pf_path


def _built(plan: _Planned) -> BuiltFunction:
    fn = plan.function
    return BuiltFunction(
        address=fn.address,
        role=plan.role,
        model=plan.model,
        numa_node=fn.numa_node,
        driver=fn.driver,
        pf=fn.physfn,
        vf_index=plan.vf_index,
        netdevs=tuple(n.name for n in fn.netdevs),
        path=fn.path,
        iommu_group=fn.iommu_group,
    )


@dataclass(slots=True)
class _Card:
    """One physical card placed behind a root port."""

    spec: CardSpec
    card: int
    port: int
    number: int = 0


@dataclass(slots=True)
class _Counters:
    ifindex: int = 2
    virtio: int = 0
    nvme: int = 0
    buses: set[int] = field(default_factory=set)
    netdevs: set[str] = field(default_factory=set)
    addresses: set[PciAddress] = field(default_factory=set)


class _Planner:
    """Turns a profile into function plans; holds the allocation counters while doing so."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile
        self.node_cpus = node_cpu_sets(profile)
        self.all_cpus = frozenset(c for cpus in self.node_cpus.values() for c in cpus)
        self.nbits = profile.cpu.total
        self.counters = _Counters()
        self.root_buses: list[tuple[int, int]] = [(0, 0)]
        self.card_number = 0
        self.next_bus = 1

    def plan(self) -> list[_Planned]:
        planned = [self._onboard(spec) for spec in self.profile.onboard]
        for node in [None, *sorted(self.profile.numa, key=lambda n: n.id)]:
            planned += self._node(node)
        return self._assign_groups(planned)

    # -- placement

    def _node(self, node: NumaNodeSpec | None) -> list[_Planned]:
        node_id = UNKNOWN_NODE if node is None else node.id
        cards = self._ports(node_id)
        if not cards:
            return []
        root_bus = 0 if node is None else self._root_bus(node)
        parent = f"pci0000:{root_bus:02x}"
        planned: list[_Planned] = []
        for card in cards:
            self.card_number += 1
            card.number = self.card_number
            planned += self._card(card, parent, root_bus, node_id)
        return planned

    def _root_bus(self, node: NumaNodeSpec) -> int:
        if node.pci_root_bus is not None:
            if node.pci_root_bus < self.next_bus:
                raise InvalidProfile(
                    f"numa[{node.id}].pci_root_bus: bus {node.pci_root_bus:#04x} overlaps buses "
                    f"already used (next free {self.next_bus:#04x})",
                    field=f"numa[{node.id}].pci_root_bus",
                    rule="bus_overlap",
                )
            bus = node.pci_root_bus
        else:
            bus = (self.next_bus + 0xF) & ~0xF
        self._check_bus(bus, "pci_root_bus")
        self.root_buses.append((0, bus))
        self.next_bus = bus + 1
        return bus

    def _ports(self, node_id: int) -> list[_Card]:
        """The cards of a node, each with its root-port number (explicit slots first)."""
        cards = [
            _Card(spec, k, spec.slot if spec.slot is not None else -1)
            for spec in self.profile.cards
            if spec.numa_node == node_id
            for k in range(spec.count)
        ]
        taken = {a.address.slot for a in self.profile.onboard} if node_id == UNKNOWN_NODE else set()
        for card in cards:
            if card.port >= 0:
                if card.port in taken:
                    raise _slot_error(card, f"slot {card.port} used twice on the root bus")
                taken.add(card.port)
        free = (s for s in range(0 if node_id != UNKNOWN_NODE else 1, 0x20) if s not in taken)
        for card in cards:
            if card.port < 0:
                card.port = next(free, -1)
                if card.port < 0:
                    raise _slot_error(card, "no free root-port slot left on the root bus")
        return sorted(cards, key=lambda c: c.port)

    def _card(self, card: _Card, parent: str, root_bus: int, node: int) -> list[_Planned]:
        spec = card.spec
        span = _bus_span(spec.model, spec.total_vfs)
        secondary = self.next_bus
        subordinate = secondary + span - 1
        self._check_bus(subordinate, "buses")
        self.next_bus = subordinate + 1
        port = self._function(
            PciAddress(0, root_bus, card.port, 0),
            parent,
            self.profile.root_port,
            node,
            bridge_buses=(secondary, subordinate),
        )
        planned = [_Planned(port, "PCI", self.profile.root_port.name)]
        below = f"{parent}/{port.address}"
        for pf in range(spec.pfs):
            planned += self._pf(card, pf, PciAddress(0, secondary, 0, pf), below, node)
        return planned

    def _pf(
        self, card: _Card, pf: int, address: PciAddress, parent: str, node: int
    ) -> list[_Planned]:
        spec, model = card.spec, card.spec.model
        sriov = model.sriov
        netdevs: tuple[NetdevPlan, ...] = ()
        name = ""
        if model.is_network and model.driver:
            name = spec.netdev.format(slot=card.number, bus=address.bus, pf=pf, card=card.card)
            mac_index = card.card * spec.pfs + pf
            mac = spec.macs[mac_index] if spec.macs else self._mac(model, address)
            netdevs = (self._netdev(spec, name, mac, port=pf, switch=address.bus),)
        sriov_plan = None
        if sriov is not None:
            offset, stride = vf_offset_stride(model, pf, spec.total_vfs)
            sriov_plan = SriovPlan(spec.total_vfs, spec.vfs[pf], offset, stride, sriov.vf_device_id)
        function = self._function(
            address,
            parent,
            model,
            node,
            sriov=sriov_plan,
            netdevs=netdevs,
            virtio=model.nested_netdev and bool(netdevs),
        )
        role: Role = "PF" if sriov is not None else "PCI"
        planned = [_Planned(function, role, model.name)]
        if sriov_plan is not None:
            for index in range(sriov_plan.num):
                planned.append(self._vf(card, function, index, name, node))
        return planned

    def _vf(self, card: _Card, pf: FunctionPlan, index: int, pf_netdev: str, node: int) -> _Planned:
        spec, model = card.spec, card.spec.model
        sriov, caps = pf.sriov, model.sriov
        assert sriov is not None and caps is not None
        address = pf.address.offset(sriov.offset + sriov.stride * index)
        driver = spec.vf_drivers[pf.address.function][index]
        netdevs: tuple[NetdevPlan, ...] = ()
        if model.is_network and driver is not None and driver == caps.vf_driver:
            mac = vf_mac(self.profile.hostname, address)
            netdevs = (self._netdev(spec, f"{pf_netdev}v{index}", mac, port=None, switch=None),)
        function = replace(
            self._function(address, pf.parent, model, node, netdevs=netdevs, driver=driver),
            ids=replace(pf.ids, device=caps.vf_device_id),
            link=pf.link if caps.vf_link_reported else UNKNOWN_LINK,
            driver_override=VFIO_PCI if driver == VFIO_PCI else None,
            physfn=pf.address,
        )
        return _Planned(function, "VF", model.name, index, pf.path)

    # -- one function

    def _function(
        self,
        address: PciAddress,
        parent: str,
        model: DeviceModel,
        node: int,
        *,
        sriov: SriovPlan | None = None,
        netdevs: tuple[NetdevPlan, ...] = (),
        virtio: bool = False,
        driver: str | Literal[False] | None = False,
        bridge_buses: tuple[int, int] | None = None,
    ) -> FunctionPlan:
        if address in self.counters.addresses:
            raise InvalidProfile(
                f"onboard: address {address} is used twice", field="onboard", rule="duplicate"
            )
        self.counters.addresses.add(address)
        cpus = self.all_cpus if node == UNKNOWN_NODE else self.node_cpus[node]
        bound = model.driver if driver is False else driver
        nvme = None
        if model.nvme_controller and bound == model.driver:
            nvme = self.counters.nvme
            self.counters.nvme += 1
        virtio_index = None
        if virtio:
            virtio_index = self.counters.virtio
            self.counters.virtio += 1
        return FunctionPlan(
            address=address,
            parent=parent,
            ids=PciIds(
                model.vendor_id,
                model.device_id,
                model.subsystem_vendor_id,
                model.subsystem_device_id,
                model.revision,
                model.class_code,
            ),
            driver=bound,
            numa_node=node,
            local_cpulist=cpulist(cpus),
            local_cpus=cpumask(cpus, self.nbits),
            link=model.link,
            sriov=sriov,
            netdevs=netdevs,
            virtio_index=virtio_index,
            nvme_index=nvme,
            bridge_buses=bridge_buses,
        )

    def _onboard(self, spec: OnboardSpec) -> _Planned:
        function = self._function(spec.address, "pci0000:00", spec.model, spec.numa_node)
        return _Planned(function, "PCI", spec.model.name)

    def _netdev(
        self, spec: CardSpec, name: str, mac: str, *, port: int | None, switch: int | None
    ) -> NetdevPlan:
        if name in self.counters.netdevs:
            raise InvalidProfile(
                f"{spec.where}.netdev: name {name!r} is used twice on the host",
                field=f"{spec.where}.netdev",
                rule="duplicate",
            )
        if len(name) > 15:
            raise InvalidProfile(
                f"{spec.where}.netdev: name {name!r} is longer than 15 characters (IFNAMSIZ)",
                field=f"{spec.where}.netdev",
                rule="length",
            )
        self.counters.netdevs.add(name)
        model = spec.model
        devlink = model.devlink_ports and port is not None and switch is not None
        ifindex = self.counters.ifindex
        self.counters.ifindex += 1
        return NetdevPlan(
            name=name,
            mac=mac,
            ifindex=ifindex,
            operstate=spec.operstate,
            speed=model.netdev_speed if model.netdev_speed is not None else -1,
            mtu=spec.mtu,
            phys_port_name=f"p{port}" if devlink else "",
            phys_switch_id=switch_id(self.profile.hostname, switch) if devlink and switch else "",
        )

    def _mac(self, model: DeviceModel, address: PciAddress) -> str:
        oui = _OUI.get(model.vendor_id, "02:00:00")
        tail = _digest(f"{self.profile.hostname}/{address}", 3)
        return f"{oui}:{tail[0:2]}:{tail[2:4]}:{tail[4:6]}"

    def _check_bus(self, bus: int, what: str) -> None:
        if bus > 0xFF:
            raise InvalidProfile(
                f"{what}: the cards need more than 256 bus numbers", field=what, rule="bus_range"
            )

    def _assign_groups(self, planned: list[_Planned]) -> list[_Planned]:
        """IOMMU groups: boot-time functions first, VFs after (as the kernel numbers them);
        onboard functions of one slot share a group (no ACS on the chipset)."""
        if not self.profile.iommu:
            return planned
        order = sorted(planned, key=lambda p: (p.role == "VF", p.function.address))
        onboard = {s.address for s in self.profile.onboard}
        groups: dict[object, int] = {}
        for plan in order:
            address = plan.function.address
            key: object = (address.bus, address.slot) if address in onboard else address
            groups.setdefault(key, len(groups))
        return [
            replace(p, function=replace(p.function, iommu_group=groups[_group_key(p, onboard)]))
            for p in planned
        ]


def _group_key(plan: _Planned, onboard: set[PciAddress]) -> object:
    address = plan.function.address
    return (address.bus, address.slot) if address in onboard else address


def _slot_error(card: _Card, message: str) -> InvalidProfile:
    where = f"{card.spec.where}.slot"
    return InvalidProfile(f"{where}: {message}", field=where, rule="slot")


def vf_offset_stride(model: DeviceModel, pf: int, total_vfs: int) -> tuple[int, int]:
    """``sriov_offset`` and ``sriov_stride`` of PF ``pf`` of a card of ``model`` whose PFs
    each have ``total_vfs`` VFs: packed PFs follow one another, interleaved ones alternate."""
    caps = model.sriov
    assert caps is not None
    if caps.layout is VfLayout.INTERLEAVED:
        return caps.first_vf_offset, model.ports
    return caps.first_vf_offset + pf * total_vfs - pf, 1


def _bus_span(model: DeviceModel, total_vfs: int) -> int:
    """Bus numbers a card needs: VFs past routing id 255 of its bus go to the next buses."""
    if model.sriov is None or total_vfs == 0:
        return 1
    last = 0
    for pf in range(model.ports):
        offset, stride = vf_offset_stride(model, pf, total_vfs)
        last = max(last, pf + offset + stride * (total_vfs - 1))
    return last // 256 + 1


def _digest(text: str, size: int) -> str:
    return hashlib.blake2b(text.encode(), digest_size=size).hexdigest()


def vf_mac(hostname: str, address: PciAddress) -> str:
    """A stable, locally administered MAC for a VF netdev (drivers pick random ones)."""
    tail = _digest(f"{hostname}/{address}/vf", 5)
    return "02:" + ":".join(tail[i : i + 2] for i in range(0, 10, 2))


def switch_id(hostname: str, bus: int) -> str:
    """``phys_switch_id`` shared by the ports of one card (the card's serial, in hex)."""
    return _digest(f"{hostname}/switch/{bus}", 8)


# --------------------------------------------------------------------------- host facts


def node_cpu_sets(profile: HardwareProfile) -> dict[int, frozenset[int]]:
    """CPUs of each node, numbered like Linux on x86: first threads of every core of every
    socket, then the second threads (``0-15`` socket 0, ``16-31`` socket 1, ``32-47`` ...)."""
    cpu = profile.cpu
    per_thread = cpu.sockets * cpu.cores_per_socket
    result: dict[int, frozenset[int]] = {}
    for socket in range(cpu.sockets):
        nodes = [n for n in profile.numa if n.socket == socket]
        share = cpu.cores_per_socket // len(nodes)
        for position, node in enumerate(sorted(nodes, key=lambda n: n.id)):
            cores = range(position * share, (position + 1) * share)
            result[node.id] = frozenset(
                thread * per_thread + socket * cpu.cores_per_socket + core
                for thread in range(cpu.threads_per_core)
                for core in cores
            )
    return result


def _write_loopback(sys_root: Path) -> None:
    lo = sys_root / "devices/virtual/net/lo"
    lo.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("address", "00:00:00:00:00:00\n"),
        ("ifindex", "1\n"),
        ("operstate", "unknown\n"),
        ("mtu", "65536\n"),
        ("type", "772\n"),
    ):
        (lo / name).write_text(text)
    os.symlink("../../devices/virtual/net/lo", sys_root / "class/net/lo")


def _write_system(
    sys_root: Path, profile: HardwareProfile, node_cpus: dict[int, frozenset[int]]
) -> None:
    system = sys_root / "devices/system"
    node_ids = sorted(node_cpus)
    online = cpulist(set(node_ids))
    for name in ("online", "possible", "has_cpu", "has_memory", "has_normal_memory"):
        _text(system / "node" / name, online)
    all_cpus = frozenset(range(profile.cpu.total))
    for name in ("online", "possible", "present"):
        _text(system / "cpu" / name, cpulist(all_cpus))
    _text(system / "cpu/offline", "")
    _text(system / "cpu/kernel_max", "8191")
    for node in profile.numa:
        _write_node(system / "node" / f"node{node.id}", node, node_cpus, profile)
    for node_id, cpus in node_cpus.items():
        node = profile.node(node_id)
        for cpu_id in cpus:
            _write_cpu(system / "cpu" / f"cpu{cpu_id}", cpu_id, node, profile, node_cpus)


def _write_node(
    folder: Path, node: NumaNodeSpec, node_cpus: dict[int, frozenset[int]], profile: HardwareProfile
) -> None:
    folder.mkdir(parents=True)
    cpus = node_cpus[node.id]
    _text(folder / "cpulist", cpulist(cpus))
    _text(folder / "cpumap", cpumask(cpus, profile.cpu.total))
    _text(
        folder / "distance",
        " ".join(
            "10" if other.id == node.id else "20"
            for other in sorted(profile.numa, key=lambda n: n.id)
        ),
    )
    (folder / "meminfo").write_text(node_meminfo(node))
    for pages in _hugepage_sizes(node):
        hp = folder / "hugepages" / f"hugepages-{pages.size_kb}kB"
        hp.mkdir(parents=True)
        _text(hp / "nr_hugepages", str(pages.total))
        _text(hp / "free_hugepages", str(pages.free))
        _text(hp / "surplus_hugepages", "0")
    for cpu in sorted(cpus):
        os.symlink(f"../../cpu/cpu{cpu}", folder / f"cpu{cpu}")


def _hugepage_sizes(node: NumaNodeSpec) -> Iterator[HugePageSpec]:
    listed = {p.size_kb: p for p in node.hugepages}
    for size in sorted({*DEFAULT_HUGEPAGE_SIZES, *listed}):
        yield listed.get(size, HugePageSpec(size, 0, 0))


def node_meminfo(node: NumaNodeSpec) -> str:
    """``nodeN/meminfo`` with the kernel's alignment (``Node 0 MemTotal:       514636 kB``)."""
    total = node.memory_mb * 1024
    huge = sum(p.size_kb * p.total for p in node.hugepages)
    used = min(total, huge + total // 64)
    two_mb = next((p for p in node.hugepages if p.size_kb == 2048), HugePageSpec(2048, 0, 0))
    rows = [("MemTotal", total), ("MemFree", total - used), ("MemUsed", used)]
    lines = [f"Node {node.id} {key + ':':<16}{value:>8} kB" for key, value in rows]
    lines += [
        f"Node {node.id} HugePages_Total: {two_mb.total:5}",
        f"Node {node.id} HugePages_Free:  {two_mb.free:5}",
        f"Node {node.id} HugePages_Surp:  {0:5}",
    ]
    return "\n".join(lines) + "\n"


def _write_cpu(
    folder: Path,
    cpu_id: int,
    node: NumaNodeSpec,
    profile: HardwareProfile,
    node_cpus: dict[int, frozenset[int]],
) -> None:
    cpu = profile.cpu
    per_thread = cpu.sockets * cpu.cores_per_socket
    core = (cpu_id % per_thread) % cpu.cores_per_socket
    socket_cpus = frozenset(
        c for n in profile.numa if n.socket == node.socket for c in node_cpus[n.id]
    )
    siblings = frozenset(cpu_id % per_thread + t * per_thread for t in range(cpu.threads_per_core))
    topology = folder / "topology"
    topology.mkdir(parents=True)
    for name, text in (
        ("physical_package_id", str(node.socket)),
        ("die_id", "0"),
        ("core_id", str(core)),
        ("thread_siblings_list", cpulist(siblings)),
        ("thread_siblings", cpumask(siblings, cpu.total)),
        ("core_cpus_list", cpulist(siblings)),
        ("core_siblings_list", cpulist(socket_cpus)),
        ("package_cpus_list", cpulist(socket_cpus)),
    ):
        _text(topology / name, text)
    _text(folder / "online", "1")
    os.symlink(f"../../node/node{node.id}", folder / f"node{node.id}")


def _text(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")
