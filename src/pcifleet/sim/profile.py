"""Hardware profiles: one simulated host, described in TOML or YAML.

A profile says what a host has, not how it is used (physical networks and tags belong to
device specs). Shape (TOML; YAML uses the same keys)::

    hostname = "compute-01"
    root_port = "intel-root-port"   # catalogue model of the root ports (default)
    iommu = true                    # IOMMU groups present (default true)

    [cpu]
    sockets = 2
    cores_per_socket = 16
    threads_per_core = 2            # default 1

    [[numa]]                        # one table per node; ids unique, sockets must exist
    id = 0
    socket = 0
    memory_mb = 131072
    pci_root_bus = 0x17             # optional: bus of the node's PCIe root complex
    hugepages = [{ size_kb = 2048, total = 1024, free = 1024 }]

    [[nics]]                        # also [[gpus]], [[accelerators]], [[nvme]]
    model = "intel-x710"            # catalogue name, of the section's kind
    numa_node = 0                   # a defined node, or -1 (unknown: hangs off bus 0)
    count = 1                       # identical cards
    pfs = 2                         # physical functions per card (<= model ports)
    vfs = 8                         # VFs enabled per PF: one number or one per PF
    total_vfs = 64                  # sriov_totalvfs per PF (firmware cap); default: model max
    vf_driver = "iavf"              # default: the model's VF driver; "" = unbound
    vf_drivers = ["iavf", "vfio-pci", ""]   # optional, per VF (length = VFs of each PF)
    netdev = "ens{slot}f{pf}"       # PF netdev name; VF netdevs are <pf netdev>v<N>
    macs = ["52:54:00:00:20:01"]    # optional PF MACs, in PF order across the cards
    slot = 0                        # optional root-port number on the node's root bus
    operstate = "up"                # or "down"
    mtu = 1500

    [[onboard]]                     # functions straight on bus 0 (chipset devices)
    model = "ich9-lpc"
    address = "0000:00:1f.0"

Netdev placeholders: ``{slot}`` is the card's 1-based position among all cards of the host
(build order: NUMA node, then root port), ``{bus}`` the decimal bus number (``enp{bus}s0f{pf}``),
``{pf}`` the PF index on the card, ``{card}`` the card index within its entry.

Every rule violation raises ``InvalidProfile`` whose message starts with the field path
(``nics[0].vfs``) and whose ``field``/``rule`` attributes name the field and the rule.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final, Literal

import yaml

from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidAddress, InvalidProfile
from pcifleet.sim.catalogue import DeviceKind, DeviceModel, get_model

ProfileFormat = Literal["toml", "yaml"]

UNKNOWN_NODE: Final = -1
VFIO_PCI: Final = "vfio-pci"

#: profile section -> the catalogue kind its models must have
SECTIONS: Final[Mapping[str, DeviceKind]] = {
    "nics": DeviceKind.NIC,
    "gpus": DeviceKind.GPU,
    "accelerators": DeviceKind.ACCELERATOR,
    "nvme": DeviceKind.NVME,
}

_TOP_KEYS: Final = frozenset(
    {"hostname", "root_port", "iommu", "cpu", "numa", "onboard", *SECTIONS}
)
_CARD_KEYS: Final = frozenset(
    {
        "model",
        "numa_node",
        "count",
        "pfs",
        "vfs",
        "total_vfs",
        "vf_driver",
        "vf_drivers",
        "netdev",
        "macs",
        "slot",
        "operstate",
        "mtu",
    }
)
_MAC_RE: Final = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HOSTNAME_RE: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_NETDEV_FIELDS: Final = frozenset({"slot", "bus", "pf", "card"})


@dataclass(frozen=True, slots=True)
class CpuTopology:
    sockets: int
    cores_per_socket: int
    threads_per_core: int = 1

    @property
    def total(self) -> int:
        return self.sockets * self.cores_per_socket * self.threads_per_core


@dataclass(frozen=True, slots=True)
class HugePageSpec:
    size_kb: int
    total: int
    free: int


@dataclass(frozen=True, slots=True)
class NumaNodeSpec:
    id: int
    socket: int
    memory_mb: int
    hugepages: tuple[HugePageSpec, ...] = ()
    pci_root_bus: int | None = None


@dataclass(frozen=True, slots=True)
class CardSpec:
    """One entry of a device section: ``count`` identical cards."""

    section: str
    index: int
    model: DeviceModel
    numa_node: int
    count: int
    pfs: int
    #: VFs enabled on each PF of a card
    vfs: tuple[int, ...]
    #: ``sriov_totalvfs`` of each PF (0 for functions without SR-IOV)
    total_vfs: int
    #: driver of each VF that is enabled (None = unbound), per PF, one entry per VF
    vf_drivers: tuple[tuple[str | None, ...], ...]
    netdev: str
    macs: tuple[str, ...]
    slot: int | None
    operstate: str
    mtu: int

    @property
    def where(self) -> str:
        return f"{self.section}[{self.index}]"


@dataclass(frozen=True, slots=True)
class OnboardSpec:
    model: DeviceModel
    address: PciAddress
    numa_node: int = UNKNOWN_NODE


@dataclass(frozen=True, slots=True)
class HardwareProfile:
    hostname: str
    cpu: CpuTopology
    numa: tuple[NumaNodeSpec, ...]
    cards: tuple[CardSpec, ...]
    onboard: tuple[OnboardSpec, ...] = ()
    root_port: DeviceModel = field(default_factory=lambda: get_model("intel-root-port"))
    iommu: bool = True

    def node(self, node_id: int) -> NumaNodeSpec:
        for node in self.numa:
            if node.id == node_id:
                return node
        raise InvalidProfile(f"numa node {node_id} not defined", field="numa", rule="numa_node")


# --------------------------------------------------------------------------- loading


def load_profile(path: Path, fmt: ProfileFormat | None = None) -> HardwareProfile:
    """Read a profile file; the format comes from ``fmt`` or the suffix (.toml, .yaml, .yml)."""
    chosen = fmt or _format_of(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidProfile(
            f"profile: cannot read {path}: {exc.strerror}", field="profile", rule="readable"
        ) from None
    return loads_profile(text, chosen)


def loads_profile(text: str, fmt: ProfileFormat) -> HardwareProfile:
    """Parse profile text in the given format."""
    data: object
    try:
        data = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InvalidProfile(
            f"profile: not valid {fmt.upper()}: {exc}", field="profile", rule="syntax"
        ) from None
    if not isinstance(data, Mapping):
        raise InvalidProfile("profile: must be a table/mapping", field="profile", rule="type")
    return parse_profile(data)


def shipped_profiles() -> tuple[str, ...]:
    """File names of the example profiles shipped as package data."""
    folder = resources.files("pcifleet.sim") / "profiles"
    return tuple(
        sorted(p.name for p in folder.iterdir() if p.name.endswith((".toml", ".yaml", ".yml")))
    )


def load_shipped(name: str) -> HardwareProfile:
    """One shipped example profile by file name (``compute-x710.toml``) or stem."""
    names = shipped_profiles()
    matches = [n for n in names if name in (n, n.rsplit(".", 1)[0])]
    if not matches:
        raise InvalidProfile(
            f"profile: no shipped profile {name!r} (shipped: {', '.join(names)})",
            field="profile",
            rule="unknown_profile",
        )
    resource = resources.files("pcifleet.sim") / "profiles" / matches[0]
    return loads_profile(resource.read_text(encoding="utf-8"), _format_of(Path(matches[0])))


def _format_of(path: Path) -> ProfileFormat:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return "toml"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise InvalidProfile(
        f"profile: cannot tell the format of {path.name!r} (use .toml, .yaml or .yml)",
        field="profile",
        rule="format",
    )


# --------------------------------------------------------------------------- typed reading


def _fail(field: str, message: str, rule: str) -> InvalidProfile:
    return InvalidProfile(f"{field}: {message}", field=field, rule=rule)


class _Table:
    """A mapping read field by field, with errors that name ``<path>.<key>``."""

    def __init__(self, data: object, path: str, allowed: frozenset[str]) -> None:
        if not isinstance(data, Mapping):
            raise _fail(path, "must be a table/mapping", "type")
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise _fail(
                f"{path}.{unknown[0]}" if path else unknown[0],
                f"unknown key (allowed: {', '.join(sorted(allowed))})",
                "unknown_key",
            )
        self.data: Mapping[object, object] = data
        self.path = path

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def integer(
        self, key: str, default: int | None = None, *, low: int = 0, high: int = 1 << 31
    ) -> int:
        value = self.data.get(key, default)
        if value is None:
            raise _fail(self.name(key), "is required", "required")
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(self.name(key), f"must be an integer, got {value!r}", "type")
        if not low <= value <= high:
            raise _fail(self.name(key), f"must be between {low} and {high}, got {value}", "range")
        return value

    def optional_integer(self, key: str, *, low: int = 0, high: int = 1 << 31) -> int | None:
        return self.integer(key, low=low, high=high) if self.has(key) else None

    def string(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise _fail(self.name(key), "is required", "required")
        if not isinstance(value, str):
            raise _fail(self.name(key), f"must be a string, got {value!r}", "type")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise _fail(self.name(key), f"must be true or false, got {value!r}", "type")
        return value

    def items(self, key: str) -> Sequence[object]:
        value = self.data.get(key, [])
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise _fail(self.name(key), "must be a list", "type")
        return value


# --------------------------------------------------------------------------- parsing


def parse_profile(data: Mapping[str, object]) -> HardwareProfile:
    """Validate a decoded profile document and build the frozen profile."""
    top = _Table(data, "", _TOP_KEYS)
    hostname = top.string("hostname")
    if not _HOSTNAME_RE.match(hostname):
        raise _fail("hostname", f"{hostname!r} is not a valid host name", "format")
    cpu = _parse_cpu(top.data.get("cpu"))
    numa = _parse_numa(top.items("numa"), cpu)
    node_ids = frozenset(n.id for n in numa)
    cards = tuple(
        _parse_card(item, section, index, node_ids)
        for section in SECTIONS
        for index, item in enumerate(top.items(section))
    )
    onboard = tuple(
        _parse_onboard(item, index, node_ids) for index, item in enumerate(top.items("onboard"))
    )
    root_port = get_model(top.string("root_port", "intel-root-port"), field="root_port")
    if root_port.kind is not DeviceKind.BRIDGE:
        raise _fail(
            "root_port", f"{root_port.name!r} is a {root_port.kind}, not a bridge", "model_kind"
        )
    return HardwareProfile(
        hostname=hostname,
        cpu=cpu,
        numa=numa,
        cards=cards,
        onboard=onboard,
        root_port=root_port,
        iommu=top.boolean("iommu", True),
    )


def _parse_cpu(data: object) -> CpuTopology:
    if data is None:
        raise _fail("cpu", "is required", "required")
    table = _Table(data, "cpu", frozenset({"sockets", "cores_per_socket", "threads_per_core"}))
    return CpuTopology(
        sockets=table.integer("sockets", low=1, high=64),
        cores_per_socket=table.integer("cores_per_socket", low=1, high=1024),
        threads_per_core=table.integer("threads_per_core", 1, low=1, high=8),
    )


def _parse_numa(items: Sequence[object], cpu: CpuTopology) -> tuple[NumaNodeSpec, ...]:
    if not items:
        raise _fail("numa", "at least one NUMA node is required", "required")
    keys = frozenset({"id", "socket", "memory_mb", "hugepages", "pci_root_bus"})
    nodes: list[NumaNodeSpec] = []
    for index, item in enumerate(items):
        table = _Table(item, f"numa[{index}]", keys)
        node_id = table.integer("id", low=0, high=1023)
        if any(n.id == node_id for n in nodes):
            raise _fail(table.name("id"), f"node {node_id} defined twice", "duplicate")
        socket = table.integer("socket", 0, low=0, high=cpu.sockets - 1)
        nodes.append(
            NumaNodeSpec(
                id=node_id,
                socket=socket,
                memory_mb=table.integer("memory_mb", low=1),
                hugepages=_parse_hugepages(table),
                pci_root_bus=table.optional_integer("pci_root_bus", low=1, high=0xFF),
            )
        )
    _check_node_cores(nodes, cpu)
    return tuple(nodes)


def _check_node_cores(nodes: Sequence[NumaNodeSpec], cpu: CpuTopology) -> None:
    """The cores of a socket are split evenly over the nodes on it; every socket has one."""
    for socket in range(cpu.sockets):
        count = sum(1 for n in nodes if n.socket == socket)
        if count == 0:
            raise _fail("numa", f"socket {socket} has no NUMA node", "socket_without_node")
        if cpu.cores_per_socket % count:
            raise _fail(
                "numa",
                f"{cpu.cores_per_socket} cores of socket {socket} do not split evenly "
                f"over its {count} nodes",
                "uneven_cores",
            )


def _parse_hugepages(node: _Table) -> tuple[HugePageSpec, ...]:
    pages: list[HugePageSpec] = []
    for index, item in enumerate(node.items("hugepages")):
        table = _Table(
            item, f"{node.name('hugepages')}[{index}]", frozenset({"size_kb", "total", "free"})
        )
        size = table.integer("size_kb", low=4)
        if size & (size - 1):
            raise _fail(table.name("size_kb"), f"{size} is not a power of two", "power_of_two")
        if any(p.size_kb == size for p in pages):
            raise _fail(table.name("size_kb"), f"size {size} kB listed twice", "duplicate")
        total = table.integer("total")
        free = table.integer("free", total)
        if free > total:
            raise _fail(table.name("free"), f"{free} free exceeds {total} total", "range")
        pages.append(HugePageSpec(size, total, free))
    return tuple(pages)


def _parse_card(item: object, section: str, index: int, nodes: frozenset[int]) -> CardSpec:
    table = _Table(item, f"{section}[{index}]", _CARD_KEYS)
    model = get_model(table.string("model"), field=table.name("model"))
    if model.kind is not SECTIONS[section]:
        raise _fail(
            table.name("model"),
            f"{model.name!r} is a {model.kind}, not a {SECTIONS[section]}",
            "model_kind",
        )
    numa_node = _node_ref(table, nodes)
    pfs = table.integer("pfs", 1, low=1, high=model.ports)
    limit = model.sriov.max_vfs if model.sriov else 0
    total_vfs = table.integer("total_vfs", limit, low=1 if limit else 0, high=limit)
    vfs = _parse_vfs(table, model, pfs, total_vfs)
    count = table.integer("count", 1, low=1, high=64)
    macs = _parse_macs(table, count * pfs)
    return CardSpec(
        section=section,
        index=index,
        model=model,
        numa_node=numa_node,
        count=count,
        pfs=pfs,
        vfs=vfs,
        total_vfs=total_vfs,
        vf_drivers=_parse_vf_drivers(table, model, vfs),
        netdev=_parse_netdev(table, model),
        macs=macs,
        slot=table.optional_integer("slot", high=0x1F),
        operstate=_choice(table, "operstate", "up", ("up", "down")),
        mtu=table.integer("mtu", 1500, low=68, high=9702),
    )


def _node_ref(table: _Table, nodes: frozenset[int]) -> int:
    node = table.integer("numa_node", low=UNKNOWN_NODE, high=1023)
    if node != UNKNOWN_NODE and node not in nodes:
        raise _fail(
            table.name("numa_node"),
            f"node {node} is not defined (defined: {sorted(nodes)}; -1 = unknown)",
            "numa_node",
        )
    return node


def _parse_vfs(table: _Table, model: DeviceModel, pfs: int, limit: int) -> tuple[int, ...]:
    raw = table.data.get("vfs", 0)
    values: list[object] = list(raw) if isinstance(raw, list) else [raw] * pfs
    if len(values) != pfs:
        raise _fail(table.name("vfs"), f"lists {len(values)} PFs, the card has {pfs}", "length")
    result: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _fail(table.name("vfs"), f"must be a non-negative integer, got {value!r}", "type")
        if value > limit:
            raise _fail(
                table.name("vfs"),
                f"{value} VFs exceed the {limit} that this {model.name} supports per PF"
                + ("" if model.sriov else " (no SR-IOV)"),
                "max_vfs",
            )
        result.append(value)
    return tuple(result)


def _parse_vf_drivers(
    table: _Table, model: DeviceModel, vfs: tuple[int, ...]
) -> tuple[tuple[str | None, ...], ...]:
    default = model.sriov.vf_driver if model.sriov else None
    single = _driver(table.string("vf_driver", default or ""))
    if not table.has("vf_drivers"):
        return tuple((single,) * n for n in vfs)
    listed = table.items("vf_drivers")
    if any(not isinstance(d, str) for d in listed):
        raise _fail(table.name("vf_drivers"), "must be a list of driver names", "type")
    if any(len(listed) != n for n in vfs):
        raise _fail(
            table.name("vf_drivers"),
            f"lists {len(listed)} drivers, each PF has {list(vfs)} VFs",
            "length",
        )
    drivers = tuple(_driver(str(d)) for d in listed)
    return tuple(drivers for _ in vfs)


def _driver(name: str) -> str | None:
    return name or None


def _parse_netdev(table: _Table, model: DeviceModel) -> str:
    pattern = table.string("netdev", "ens{slot}f{pf}")
    if table.has("netdev") and not model.is_network:
        raise _fail(table.name("netdev"), f"{model.name} has no netdev", "not_network")
    try:
        fields = {name for _, name, _, _ in _formatter_parse(pattern) if name is not None}
    except ValueError as exc:
        raise _fail(table.name("netdev"), f"bad pattern {pattern!r}: {exc}", "pattern") from None
    unknown = sorted(fields - _NETDEV_FIELDS)
    if unknown:
        raise _fail(
            table.name("netdev"),
            f"unknown placeholder {{{unknown[0]}}} (allowed: slot, bus, pf, card)",
            "pattern",
        )
    return pattern


def _formatter_parse(pattern: str) -> list[tuple[str, str | None, str | None, str | None]]:
    return list(string.Formatter().parse(pattern))


def _parse_macs(table: _Table, expected: int) -> tuple[str, ...]:
    macs = table.items("macs")
    if not macs:
        return ()
    if len(macs) != expected:
        raise _fail(table.name("macs"), f"lists {len(macs)} MACs for {expected} PFs", "length")
    result: list[str] = []
    for mac in macs:
        if not isinstance(mac, str) or not _MAC_RE.match(mac.lower()):
            raise _fail(table.name("macs"), f"{mac!r} is not a MAC address", "format")
        result.append(mac.lower())
    return tuple(result)


def _choice(table: _Table, key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = table.string(key, default)
    if value not in allowed:
        raise _fail(
            table.name(key), f"must be one of {', '.join(allowed)}, got {value!r}", "choice"
        )
    return value


def _parse_onboard(item: object, index: int, nodes: frozenset[int]) -> OnboardSpec:
    table = _Table(item, f"onboard[{index}]", frozenset({"model", "address", "numa_node"}))
    model = get_model(table.string("model"), field=table.name("model"))
    try:
        address = PciAddress.parse(table.string("address"))
    except InvalidAddress as exc:
        raise _fail(table.name("address"), exc.message, "address") from None
    if address.bus != 0:
        raise _fail(table.name("address"), f"{address} is not on bus 0", "bus_zero")
    numa_node = _node_ref(table, nodes) if table.has("numa_node") else UNKNOWN_NODE
    return OnboardSpec(model=model, address=address, numa_node=numa_node)
