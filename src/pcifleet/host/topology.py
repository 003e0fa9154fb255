"""Host CPU and memory topology: NUMA nodes and CPU sockets from ``sys/devices/system``.

``node/nodeN/{cpulist,meminfo,hugepages/hugepages-<size>kB/}`` give each NUMA cell its CPUs,
memory and huge pages; ``cpu/cpuN/topology/physical_package_id`` gives each CPU its socket. A
tree without them (a container, a capture that cut them) yields fewer facts, never an error;
what could not be parsed is reported as a warning text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pcifleet.domain.errors import SysfsError
from pcifleet.domain.numa import HugePages, NumaCell
from pcifleet.host.sysfs import SysfsReader


def parse_cpulist(text: str, *, field_name: str = "cpulist") -> frozenset[int]:
    """The kernel's CPU list format: ``0-3,8,10-11`` (empty means no CPUs)."""
    cpus: set[int] = set()
    for chunk in text.strip().split(","):
        if not chunk:
            continue
        low, dash, high = chunk.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise SysfsError(
                f"{field_name} {text!r}: {chunk!r} is not a CPU number or range",
                field=field_name,
                rule="cpulist",
            ) from None
        if first < 0 or last < first:
            raise SysfsError(
                f"{field_name} {text!r}: range {chunk!r} is empty or negative",
                field=field_name,
                rule="cpulist",
            )
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


@dataclass(frozen=True, slots=True)
class HostTopology:
    cells: tuple[NumaCell, ...] = ()
    #: CPU -> socket (physical package), for the CPUs whose topology the kernel reports
    cpu_sockets: tuple[tuple[int, int], ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sockets(self) -> frozenset[int]:
        return frozenset(socket for _, socket in self.cpu_sockets)

    def cell(self, node: int) -> NumaCell | None:
        return next((cell for cell in self.cells if cell.id == node), None)


def read_topology(
    reader: SysfsReader, cpu_sockets: Mapping[int, int] | None = None
) -> HostTopology:
    """The host's NUMA cells and CPU sockets. ``cpu_sockets`` from an earlier read spares
    one file per CPU (a package never changes while the host runs)."""
    warnings: list[str] = []
    sockets = dict(cpu_sockets) if cpu_sockets is not None else _cpu_sockets(reader, warnings)
    node_root = reader.path("sys", "devices", "system", "node")
    cells = []
    for name in _numbered(reader.list_dir(node_root) or (), "node"):
        cell = _read_cell(reader, f"{node_root}/node{name}", name, sockets, warnings)
        if cell is not None:
            cells.append(cell)
    return HostTopology(tuple(cells), tuple(sorted(sockets.items())), tuple(warnings))


def _numbered(names: list[str] | tuple[()], prefix: str) -> list[int]:
    """``node0``, ``node1`` ... -> [0, 1]: numbered entries only (not ``possible``)."""
    numbers = []
    for name in names:
        suffix = name.removeprefix(prefix)
        if suffix != name and suffix.isdigit():
            numbers.append(int(suffix))
    return sorted(numbers)


def _cpu_sockets(reader: SysfsReader, warnings: list[str]) -> dict[int, int]:
    cpu_root = reader.path("sys", "devices", "system", "cpu")
    sockets: dict[int, int] = {}
    for cpu in _numbered(reader.list_dir(cpu_root) or (), "cpu"):
        try:
            package = reader.read_int(f"{cpu_root}/cpu{cpu}/topology/physical_package_id")
        except SysfsError as exc:
            warnings.append(str(exc))
            continue
        if package is not None and package >= 0:
            sockets[cpu] = package
    return sockets


def _read_cell(
    reader: SysfsReader, node_dir: str, node: int, sockets: dict[int, int], warnings: list[str]
) -> NumaCell | None:
    try:
        cpus = parse_cpulist(reader.read_text(f"{node_dir}/cpulist") or "")
        memory_kb = _meminfo_total_kb(reader.read_text(f"{node_dir}/meminfo") or "")
        hugepages = _hugepages(reader, f"{node_dir}/hugepages")
    except SysfsError as exc:
        warnings.append(f"NUMA node {node}: {exc}")
        return None
    cell_sockets = {sockets[cpu] for cpu in cpus if cpu in sockets}
    socket = cell_sockets.pop() if len(cell_sockets) == 1 else None
    return NumaCell(
        id=node, socket=socket, cpus=cpus, memory_mb=memory_kb // 1024, hugepages=hugepages
    )


def _meminfo_total_kb(text: str) -> int:
    """``Node 0 MemTotal:  514636 kB`` -> 514636 (0 when the line is absent)."""
    for line in text.splitlines():
        label, _, rest = line.partition(":")
        if label.endswith("MemTotal"):
            number = rest.split()[0] if rest.split() else ""
            if not number.isdigit():
                raise SysfsError(
                    f"meminfo MemTotal {rest.strip()!r} is not a number of kB",
                    field="meminfo",
                    rule="int",
                )
            return int(number)
    return 0


def _hugepages(reader: SysfsReader, directory: str) -> tuple[HugePages, ...]:
    pools = []
    for name in reader.list_dir(directory) or ():
        size = name.removeprefix("hugepages-").removesuffix("kB")
        if not size.isdigit():
            continue
        total = reader.read_int(f"{directory}/{name}/nr_hugepages") or 0
        free = reader.read_int(f"{directory}/{name}/free_hugepages") or 0
        pools.append(HugePages(size_kb=int(size), total=total, free=free))
    return tuple(sorted(pools, key=lambda pool: pool.size_kb))
