"""``pcifleet host ...``: look at this host's PCI devices as the agent sees them.

``pcifleet host scan`` reads sysfs (the real ``/sys`` or any tree given with ``--sysfs-root``:
a capture, a fake tree from ``pcifleet.sim``), applies device specs when ``--spec`` names a
file, and prints a table (PFs with their VFs under them) or, with ``--json``, a document::

    {"root": "/", "functions": [{"address": ..., "vendor_id": ..., "role": "PF", ...}, ...],
     "numa_nodes": [...], "warnings": [...]}

Each function entry carries ``address``, ``vendor_id``, ``device_id``, ``vendor_name``,
``device_name``, ``class`` (6 hex digits), ``class_name``, ``numa_node`` (null when unknown),
``local_cpus``, ``iommu_group``, ``driver`` (null when none), ``driver_override``, ``role``
(``PF``, ``VF``, ``PCI``), ``pf`` (parent address or null), ``vf_index`` (or null),
``sriov_totalvfs``, ``sriov_numvfs`` (null unless a PF), ``vfs``, ``netdevs`` (names),
``interfaces`` (netdev details), link speed and width; with ``--spec`` also ``assignable``,
``tags``, ``spec_index`` and ``reasons`` (one per spec when not assignable).

The spec file holds Nova ``[pci] device_spec`` JSON values: one per line, or one JSON list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import PcifleetError
from pcifleet.domain.spec import SpecList
from pcifleet.host.discovery import scan
from pcifleet.host.model import HostScan, PciFunction
from pcifleet.host.qualify import QualifiedScan, Verdict, load_spec_file, qualify
from pcifleet.host.sysfs import SysfsReader

host_app = typer.Typer(
    name="host",
    help="This host's PCI devices as the pcifleet agent discovers them.",
    no_args_is_help=True,
)

_ROLE = {DeviceType.PF: "PF", DeviceType.VF: "VF", DeviceType.PCI: "PCI", DeviceType.VDPA: "vDPA"}


def register(app: typer.Typer) -> None:
    app.add_typer(host_app)


SysfsRoot = Annotated[
    Path,
    typer.Option(
        "--sysfs-root",
        help="Directory holding sys/ (or the sys directory itself): a capture or a fake tree.",
    ),
]
SpecFile = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        help="Device specs: Nova [pci] device_spec JSON values, one per line, or a JSON list.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print a JSON document instead.")]


@host_app.command("scan")
def scan_command(
    sysfs_root: SysfsRoot = Path("/"), spec: SpecFile = None, as_json: AsJson = False
) -> None:
    """Discover every PCI function: PF -> VF tree, NUMA node, driver, netdevs, names."""
    errors = Console(stderr=True)
    if not sysfs_root.is_dir():
        errors.print(
            f"[red]error:[/] --sysfs-root {escape(str(sysfs_root))} is not a directory",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    try:
        specs = load_spec_file(spec) if spec is not None else None
        with errors.status(f"Scanning PCI devices under {escape(str(sysfs_root))} ..."):
            result = scan(SysfsReader.for_directory(sysfs_root))
            qualified = qualify(result, specs) if specs is not None else None
    except PcifleetError as exc:
        errors.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(document(result, qualified, str(sysfs_root)), indent=2))
        return
    render(Console(), result, qualified, str(sysfs_root), specs)


# ---------------------------------------------------------------------- JSON


def document(result: HostScan, qualified: QualifiedScan | None, root: str) -> dict[str, object]:
    """The ``--json`` document (stable keys; see the module docstring)."""
    return {
        "root": root,
        "functions": [
            function_entry(f, qualified.get(f.address) if qualified else None, qualified)
            for f in result
        ],
        "numa_nodes": [
            {
                "id": cell.id,
                "socket": cell.socket,
                "cpus": sorted(cell.cpus),
                "memory_mb": cell.memory_mb,
                "hugepages": [
                    {"size_kb": p.size_kb, "total": p.total, "free": p.free} for p in cell.hugepages
                ],
            }
            for cell in result.numa_cells
        ],
        "warnings": [{"subject": w.subject, "message": w.message} for w in result.warnings],
    }


def function_entry(
    f: PciFunction, verdict: Verdict | None, qualified: QualifiedScan | None
) -> dict[str, object]:
    sriov = f.sriov
    entry: dict[str, object] = {
        "address": str(f.address),
        "vendor_id": f.vendor_id,
        "device_id": f.device_id,
        "vendor_name": f.vendor_name,
        "device_name": f.device_name,
        "subsystem_vendor_id": f.subsystem_vendor_id,
        "subsystem_device_id": f.subsystem_device_id,
        "revision": None if f.revision is None else f"{f.revision:02x}",
        "class": None if f.pci_class is None else f.pci_class.hex,
        "class_name": f.class_name,
        "kind": None if f.pci_class is None else f.pci_class.kind.value,
        "numa_node": f.numa_node,
        "local_cpus": sorted(f.local_cpus),
        "iommu_group": f.iommu_group,
        "driver": f.driver,
        "driver_override": f.driver_override,
        "role": _ROLE[f.role],
        "pf": None if f.physfn is None else str(f.physfn),
        "vf_index": f.vf_index,
        "sriov_totalvfs": None if sriov is None else sriov.totalvfs,
        "sriov_numvfs": None if sriov is None else sriov.numvfs,
        "sriov_vf_device": None if sriov is None else sriov.vf_device_id,
        "vfs": [] if sriov is None else [str(vf) for _, vf in sriov.vfs],
        "netdevs": list(f.netdev_names),
        "interfaces": [
            {
                "name": n.name,
                "mac": n.mac,
                "operstate": n.operstate,
                "speed_mbps": n.speed_mbps,
                "mtu": n.mtu,
                "phys_port_name": n.phys_port_name,
                "phys_switch_id": n.phys_switch_id,
            }
            for n in f.netdevs
        ],
        "link_speed": f.link_speed,
        "link_width": f.link_width,
    }
    if qualified is not None and verdict is not None:
        entry["assignable"] = verdict.assignable
        entry["tags"] = dict(verdict.tags)
        entry["spec_index"] = verdict.spec_index
        entry["reasons"] = list(verdict.reasons)
    return entry


# ---------------------------------------------------------------------- table


def _page_size(size_kb: int) -> str:
    """``2048`` -> ``2 MiB``, ``1048576`` -> ``1 GiB``."""
    for unit, scale in (("GiB", 1 << 20), ("MiB", 1 << 10)):
        if size_kb >= scale and size_kb % scale == 0:
            return f"{size_kb // scale} {unit}"
    return f"{size_kb} KiB"


def render(
    console: Console,
    result: HostScan,
    qualified: QualifiedScan | None,
    root: str,
    specs: SpecList | None,
) -> None:
    console.print(_summary(result, root))
    for cell in result.numa_cells:
        pages = ", ".join(
            f"{_page_size(p.size_kb)}: {p.free}/{p.total} free" for p in cell.hugepages
        )
        socket = "?" if cell.socket is None else cell.socket
        console.print(
            f"  NUMA node {cell.id}: socket {socket}, CPUs {_cpus(cell.cpus)}, "
            f"{cell.memory_mb} MiB" + (f", huge pages {pages}" if pages else "")
        )
    console.print(_table(result, qualified))
    if specs is not None and qualified is not None:
        count = len(qualified.assignable())
        console.print(f"{count} of {len(result)} functions assignable under {len(specs)} specs")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(str(warning))}")


def _summary(result: HostScan, root: str) -> str:
    roles = [f.role for f in result]
    return (
        f"[bold]{len(result)} PCI functions[/] under {escape(root)}: "
        f"{roles.count(DeviceType.PF)} PFs, {roles.count(DeviceType.VF)} VFs"
    )


def _table(result: HostScan, qualified: QualifiedScan | None) -> Table:
    table = Table(show_edge=False, pad_edge=False, expand=False)
    for column in ("Address", "Role", "Class", "Device", "NUMA", "Driver", "Netdevs"):
        table.add_column(column, no_wrap=column in ("Address", "Role", "NUMA"))
    if qualified is not None:
        table.add_column("Assignable")
    for function, depth in _tree_order(result):
        row = _row(function, depth)
        if qualified is not None:
            verdict = qualified.get(function.address)
            row.append("" if verdict is None else _verdict(verdict))
        table.add_row(*row, style="dim" if function.pci_class and _is_bridge(function) else None)
    return table


def _tree_order(result: HostScan) -> list[tuple[PciFunction, int]]:
    """Functions in address order, each PF followed by its VFs (indented)."""
    placed = set()
    ordered: list[tuple[PciFunction, int]] = []
    for function in result:
        if function.address in placed:
            continue
        if function.physfn is not None and result.get(function.physfn) is not None:
            continue  # listed under its PF
        ordered.append((function, 0))
        placed.add(function.address)
        for vf in result.vfs_of(function.address):
            ordered.append((vf, 1))
            placed.add(vf.address)
    return ordered


def _row(f: PciFunction, depth: int) -> list[str]:
    address = f"  └ {f.address}" if depth else str(f.address)
    role = _ROLE[f.role]
    if f.role is DeviceType.VF and f.vf_index is not None:
        role = f"VF {f.vf_index}"
    if f.sriov is not None:
        role = f"PF {f.sriov.numvfs}/{f.sriov.totalvfs}"
    device = f"{f.vendor_id}:{f.device_id}" + (f" {f.device_name}" if f.device_name else "")
    driver = f.driver or "-"
    if f.driver_override:
        driver += f" (override {f.driver_override})"
    netdevs = ", ".join(f"{n.name} {n.operstate}" if n.operstate else n.name for n in f.netdevs)
    return [
        address,
        role,
        escape(f.class_name or "-"),
        escape(device),
        "-" if f.numa_node is None else str(f.numa_node),
        escape(driver),
        escape(netdevs or "-"),
    ]


def _verdict(verdict: Verdict) -> str:
    if verdict.assignable:
        tags = " ".join(f"{k}={v}" for k, v in verdict.tags.items())
        return f"[green]yes[/] spec {verdict.spec_index}" + (f" {escape(tags)}" if tags else "")
    return "[red]no[/] " + escape(verdict.explain())


def _is_bridge(f: PciFunction) -> bool:
    return f.pci_class is not None and f.pci_class.base == 0x06


def _cpus(cpus: frozenset[int]) -> str:
    """``{0,1,2,3,8}`` -> ``0-3,8``."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges) or "-"
