"""``pcifleet demo``: the end-to-end scenario of :mod:`pcifleet.sim.demo`, shown with Rich.

The scenario (steps, data, the API calls) lives in :mod:`pcifleet.sim.demo`; this module only
renders each step's record as it finishes: a spinner while a step runs, then a check line and
the step's table. ``--json`` prints one machine-readable summary instead (placements,
failures, the explanation, the delete, utilization before and after).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.status import Status
from rich.table import Table

from pcifleet.cli.output import Output, failures
from pcifleet.control.api.schemas.instances import CellOut, ExplainOut, InstanceOut, RequestOut
from pcifleet.control.api.schemas.migrations import PlanOut
from pcifleet.control.api.schemas.networks import NetworkOut, PortOut
from pcifleet.sim.demo import (
    DEVICE_KINDS,
    BootsDone,
    CellUsage,
    ControllerStarted,
    Deleted,
    DemoRun,
    Explained,
    FlavorsCreated,
    GroupsCreated,
    GuestPorts,
    HostsReported,
    Migrated,
    Migrations,
    NetworksAndPorts,
    QuietView,
    Step,
    Utilization,
    prepare_data_dir,
    run_demo,
    summary,
)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="A new or empty directory for the demo's database and simulated hosts "
        "(default: a fresh temporary directory).",
        show_default=False,
    ),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable summary instead of tables.")
]


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(data_dir: DataDir = None, as_json: AsJson = False) -> None:
    """Run the demo: simulated hosts, groups, flavors, boots, explain and delete."""
    out = Output(as_json)
    with failures(out):
        chosen = prepare_data_dir(data_dir)
        if as_json:
            out.note(f"pcifleet demo: data directory {chosen} (fresh)")
            typer.echo(json.dumps(summary(run_demo(chosen, QuietView())), indent=2))
            return
        view = RichView(out.console)
        view.intro(chosen)
        try:
            view.outro(run_demo(chosen, view))
        except KeyboardInterrupt:
            out.errors.print(f"interrupted; what was done so far stays in {chosen}")
            raise typer.Exit(130) from None
        finally:
            view.stop()


# --- the Rich view ---------------------------------------------------------------------------


class RichView:
    """A spinner per step, then the step's own table."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None

    def intro(self, data_dir: Path) -> None:
        self.console.rule("[bold]pcifleet demo[/]")
        self.console.print(f"data directory: [bold]{escape(str(data_dir))}[/] (fresh)")

    def started(self, step: Step) -> None:
        self._status = self.console.status(escape(step.title) + " ...")
        self._status.start()

    def progress(self, message: str) -> None:
        if self._status is not None:
            self._status.update(escape(message) + " ...")

    def stop(self) -> None:
        """Stop the spinner (also when a step failed, before the error is printed)."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def finished(self, step: Step, result: object, seconds: float) -> None:
        self.stop()
        self.console.print()
        self.console.print(f"[green]✓[/] [bold]{escape(step.title)}[/] [dim]({seconds:.2f} s)[/]")
        render = _RENDERERS.get(type(result))
        if render is not None:
            render(self.console, result)

    def outro(self, run: DemoRun) -> None:
        self.console.print()
        self.console.rule(f"[bold]done in {run.seconds:.1f} s[/]")
        where = escape(str(run.data_dir))
        me = escape(_program())
        self.console.print(
            f"The database and the simulated hosts' sysfs trees stay in {where}. Explore:\n"
            f"  {me} host scan --sysfs-root {where}/hosts/gpu-a100-01\n"
            f"  {me} server --data-dir {where} --single-user   "
            f"# then, in another shell: {me} list",
            soft_wrap=True,
        )


def _program() -> str:
    """The command as the user ran it (``.venv/bin/pcifleet`` from scripts/demo.sh)."""
    invoked = Path(sys.argv[0] if sys.argv else "")
    if invoked.name != "pcifleet":
        return "pcifleet"
    if invoked.is_absolute() and invoked.is_relative_to(Path.cwd()):
        return str(invoked.relative_to(Path.cwd()))
    return str(invoked)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


def render_controller(console: Console, started: ControllerStarted) -> None:
    console.print(
        f"  pcifleet {escape(started.version)} on {escape(started.database_url)}; "
        f"authentication: bearer tokens (one admin, one agent token per host)"
    )


def render_hosts(console: Console, reported: HostsReported) -> None:
    console.print(escape("  device specs (Nova [pci] device_spec values, first match wins):"))
    for spec in reported.specs:
        console.print(f"    {escape(spec)}", soft_wrap=True)
    table = _table("", "host", "profile", "NUMA", "CPUs", "PCI fns", "reported (assignable)")
    for host in reported.hosts:
        lines = list(host.inventory)
        lines += [f"[dim]excluded: {address}[/]" for address in host.excluded]
        table.add_row(
            host.name,
            host.profile,
            str(host.cells),
            str(host.cpus),
            str(host.functions),
            "\n".join(lines),
        )
    console.print(table)


def render_groups(console: Console, created: GroupsCreated) -> None:
    table = _table("", "group", "type", "matches (vendor:product)", "description")
    for group in created.groups:
        matches = ", ".join(f"{m.vendor_id}:{m.product_id}" for m in group.match)
        table.add_row(group.name, group.device_type or "any", matches, group.description or "")
    console.print(table)


def render_flavors(console: Console, created: FlavorsCreated) -> None:
    table = _table("", "flavor", "vCPUs", "memory", "extra specs")
    for flavor in created.flavors:
        specs = "\n".join(f"{k}={v}" for k, v in flavor.extra_specs.items()) or "-"
        table.add_row(
            flavor.name, str(flavor.vcpus), f"{flavor.memory_mb // 1024} GiB", escape(specs)
        )
    console.print(table)


def _segments(network: NetworkOut) -> str:
    return " + ".join(
        f"{s.network_type} {s.segmentation_id}"
        + (f" on {s.physical_network}" if s.physical_network else "")
        for s in network.segments
    )


def port_label(port: PortOut) -> str:
    """A port's name, or the start of its id (ports a ``net=`` NIC made have no name)."""
    return port.name or port.id[:8]


def _port_settings(port: PortOut) -> str:
    settings = []
    if port.trusted:
        settings.append("trusted")
    if port.qos_max_kbps is not None:
        settings.append(f"QoS max {port.qos_max_kbps} kbit/s")
    return ", ".join(settings) or "-"


def _profile(port: PortOut, key: str) -> str:
    value = port.binding.profile.get(key) if port.binding else None
    return "-" if value is None else str(value)


def _binding_row(guest: GuestPorts, port: PortOut, first: bool) -> list[str]:
    binding = port.binding
    mac = _profile(port, "pf_mac_address")
    if mac == "-":
        mac = _profile(port, "device_mac_address")
    vlan = binding.vif_details.get("vlan") if binding else None
    return [
        (escape(guest.instance.name) if first else "") + f"\n[dim]{escape(port_label(port))}[/]",
        f"{port.vnic_type}\n[dim]{binding.vif_type if binding else port.vif_type}[/]",
        "-" if vlan is None else str(vlan),
        f"{escape(binding.host) if binding else '-'}\n[dim]{_profile(port, 'pci_slot')}[/]",
        _profile(port, "vf_num"),
        f"{escape(_profile(port, 'physical_network'))}\n[dim]{mac}[/]",
    ]


def render_networks(console: Console, made: NetworksAndPorts) -> None:
    table = _table("", "network", "segments (SR-IOV ports use the VLAN one)", "shared")
    for network in made.networks:
        table.add_row(network.name, _segments(network), "yes" if network.shared else "no")
    console.print(table)
    table = _table("ports made before the boots", "port", "network", "vnic type", "settings")
    names = {n.id: n.name for n in made.networks}
    for port in made.ports:
        on = names.get(port.network_id, port.network_id)
        table.add_row(port_label(port), on, port.vnic_type, _port_settings(port))
    console.print(table)
    for port in made.ports:
        for note in port.notes:
            _note(console, f"[dim]{escape(port_label(port))}: {escape(note)}[/]")
    render_bindings(console, made.guests)


def render_bindings(console: Console, guests: tuple[GuestPorts, ...]) -> None:
    table = _table(
        "port bindings",
        "guest\n[dim]port[/]",
        "vnic type\n[dim]vif type[/]",
        "VLAN",
        "host\n[dim]pci_slot[/]",
        "VF",
        "physnet\n[dim]PF MAC[/]",
    )
    for guest in guests:
        for i, port in enumerate(guest.ports):
            table.add_row(*_binding_row(guest, port, i == 0))
    console.print(table)
    for guest in guests:
        vm = guest.instance
        if vm.state != "active":
            render_failure(console, vm)
        for warning in vm.warnings:
            _note(console, f"[yellow]! {escape(vm.name)}[/]: {escape(warning)}")


def _cells(cells: list[CellOut]) -> str:
    return ", ".join(str(c.host_cell) for c in cells) or "-"


def _vcpus(vcpus: int, cells: list[CellOut]) -> str:
    pinned = sum(len(c.pinned_cpus) for c in cells)
    if pinned:
        return f"{pinned} pinned"
    return f"{vcpus} shared" if cells else f"{vcpus} floating"


def _requests(requests: list[RequestOut]) -> str:
    return "; ".join(f"{r.requester}: {', '.join(r.devices)}" for r in requests) or "-"


def _device_lines(requests: list[RequestOut]) -> str:
    """One address per line, the group named on its first: narrow enough for 80 columns."""
    lines = [
        f"{r.requester if i == 0 else ' ' * len(r.requester)} {address}"
        for r in requests
        for i, address in enumerate(r.devices)
    ]
    return "\n".join(lines) or "-"


def render_boots(console: Console, done: BootsDone) -> None:
    table = _table("placements", "instance", "flavor", "host", "cells", "vCPUs", "devices")
    for vm in done.placed:
        table.add_row(
            vm.name,
            vm.flavor,
            vm.host or "-",
            _cells(vm.cells),
            _vcpus(vm.vcpus, vm.cells),
            _device_lines(vm.requests),
        )
    console.print(table)
    for vm in done.failed:
        render_failure(console, vm)


def render_failure(console: Console, vm: InstanceOut) -> None:
    reason = vm.fault.message if vm.fault else "no reason given"
    console.print(
        f"[red]✗ {escape(vm.name)}[/] ({escape(vm.flavor)}) is in state [red]{vm.state}[/]: "
        f"{escape(reason)}",
        soft_wrap=True,
    )
    for line in vm.fault.details if vm.fault else ():
        console.print(f"    - {escape(line)}", soft_wrap=True)


def _usage(used: int, total: int) -> str:
    if total == 0:
        return "[dim]-[/]"
    style = "green" if used == 0 else "red" if used >= total else "yellow"
    return f"[{style}]{used}/{total}[/]"


def _usage_cells(cell: CellUsage) -> list[str]:
    return [
        _usage(cell.vcpus_used, cell.cpus),
        *(_usage(*cell.devices.get(kind, (0, 0))) for kind in DEVICE_KINDS),
    ]


def _usage_table(title: str, *keys: str) -> Table:
    table = _table(title, *keys, "vCPUs", *DEVICE_KINDS)
    for column in table.columns[len(keys) :]:
        column.justify = "right"
    return table


def render_utilization(console: Console, usage: Utilization) -> None:
    table = _usage_table("used/total per host and NUMA cell", "host", "cell")
    for cell in usage.cells:
        table.add_row(cell.host, str(cell.cell), *_usage_cells(cell))
    console.print(table)
    floating = ", ".join(f"{host} {n}" for host, n in usage.floating_vcpus.items() if n)
    if floating:
        console.print(
            f"  [dim]floating vCPUs (guests without a NUMA topology): {floating}[/]",
            soft_wrap=True,
        )


def render_explain(console: Console, explained: Explained) -> None:
    result: ExplainOut = explained.explanation
    chosen = result.chosen
    if chosen is None:
        console.print(f"  [red]no valid host[/]: {escape(result.sentence)}", soft_wrap=True)
    else:
        console.print(
            f"  a new {escape(explained.name)} ({escape(result.flavor)}) would go to "
            f"[bold]{escape(chosen.host)}[/], NUMA cells {_cells(chosen.cells)}, "
            f"{escape(_requests(chosen.requests))} (a dry run: nothing is claimed)",
            soft_wrap=True,
        )
    table = _table(f"{result.hosts} hosts, {result.passed} passed", "host", "outcome", "why")
    for group in result.groups:
        for outcome in group.examples:
            verdict = "[green]passed[/]" if outcome.passed else f"[red]{outcome.stage}[/]"
            why = outcome.message or ("chosen" if chosen and chosen.host == outcome.host else "")
            table.add_row(outcome.host, verdict, escape(why or group.summary))
    console.print(table)


def _note(console: Console, markup: str) -> None:
    """A line of prose under a table, indented and wrapped at the console's width."""
    console.print(Padding(markup, (0, 0, 0, 2)))


def _moves(source: list[str], destination: list[str]) -> str:
    return f"{', '.join(source) or '-'} → {', '.join(destination) or '-'}"


def render_plan(console: Console, name: str, plan: PlanOut, labels: Mapping[str, str]) -> None:
    """One table per plan: each device request or port, its action and where it goes."""
    title = (
        f"{name}: {plan.source_host} → {plan.destination_host} "
        f"({'allowed' if plan.allowed else 'refused'}, dry run)"
    )
    table = _table(title, "device / port", "vnic type", "action", "source → destination")
    for item in plan.items:
        style = "green" if item.action == "transparent" else "yellow"
        table.add_row(
            escape(labels.get(item.requester, item.requester)),
            item.vnic_type or "-",
            f"[{style}]{item.action}[/]",
            _moves(item.source, item.destination),
        )
    console.print(table)
    for item in plan.items:
        _note(console, f"[dim]{item.action}: {escape(item.reason)}[/]")
    for line in [*plan.warnings, *([plan.refusal] if plan.refusal else [])]:
        _note(console, f"[yellow]! {escape(line)}[/]")


def _labels(migrated: Migrated) -> dict[str, str]:
    """Ports by name (or id start), prefixed with ``port``; groups as they are."""
    return {p.id: f"port {port_label(p)}" for p in migrated.ports}


def render_migrations(console: Console, done: Migrations) -> None:
    for migrated in done.guests:
        render_plan(console, migrated.before.name, migrated.plan, _labels(migrated))
    _note(
        console,
        "[dim]run for real: the controller claims the destination devices first; the agents "
        "move the guest and report it (here the demo reports completion in their place)[/]",
    )
    table = _table("before → after", "guest", "state", "host", "devices", "source devices")
    for migrated in done.guests:
        before, after = migrated.before, migrated.after
        table.add_row(
            before.name,
            f"{migrated.started.state}\n→ {migrated.finished.state}",
            f"{escape(before.host or '-')}\n→ {escape(after.host or '-')}",
            f"{_addresses(before)}\n→ {_addresses(after)}",
            "\n".join(f"now {state}" for state in migrated.source_states.values()) or "-",
        )
    console.print(table)
    for migrated in done.guests:
        held = ", ".join(f"{host} {address}" for host, address, _ in migrated.in_flight)
        _note(console, f"[dim]{escape(migrated.before.name)} in flight held: {escape(held)}[/]")


def _addresses(vm: InstanceOut) -> str:
    return ", ".join(a for r in vm.requests for a in r.devices) or "-"


def render_delete(console: Console, deleted: Deleted) -> None:
    vm = deleted.instance
    console.print(f"  {escape(vm.name)} on {escape(vm.host or '-')} is now {vm.state}; freed:")
    for device in deleted.freed:
        console.print(f"    {escape(device.group)} {device.address}: now {escape(device.state)}")
    table = _usage_table(f"{vm.host}: used/total before → after the delete", "cell")
    after = {(c.host, c.cell): c for c in deleted.after.cells}
    for cell in deleted.before.cells:
        now = after.get((cell.host, cell.cell))
        if cell.host == vm.host and now is not None:
            changes = zip(_usage_cells(cell), _usage_cells(now), strict=True)
            table.add_row(str(cell.cell), *(_change(b, a) for b, a in changes))
    console.print(table)


def _change(before: str, after: str) -> str:
    return before if before == after else f"{before} → {after}"


_RENDERERS: Mapping[type, Callable[[Console, Any], None]] = {
    ControllerStarted: render_controller,
    HostsReported: render_hosts,
    GroupsCreated: render_groups,
    FlavorsCreated: render_flavors,
    NetworksAndPorts: render_networks,
    BootsDone: render_boots,
    Utilization: render_utilization,
    Explained: render_explain,
    Migrations: render_migrations,
    Deleted: render_delete,
}
