"""``pcifleet boot | list | show | delete | explain``: instances, through the HTTP client.

Every command talks to the controller through :class:`pcifleet.client.PcifleetClient`, built
by :mod:`pcifleet.cli.connect` from ``--url``/``--token`` (or an in-process app in tests and
the demo). Output is a Rich view (the placement: host, NUMA cells, devices per request; for
failures the reason) or, with ``--json``, the API's own JSON document. A boot that cannot be
placed prints its reason and exits 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pcifleet.cli.connect import DEFAULT_URL, AsJson, ClientFactory, Token, Url
from pcifleet.cli.networks import parse_nic, print_bindings
from pcifleet.cli.output import Output
from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.instances import (
    CellOut,
    ExplainOut,
    InstanceOut,
    RequestOut,
)
from pcifleet.domain.errors import PcifleetError

Project = Annotated[str | None, typer.Option("--project", help="Project of the instance.")]
Flavor = Annotated[str, typer.Option("--flavor", help="Flavor name.")]

_STATE_STYLE = {"active": "green", "error": "red", "deleted": "dim", "building": "yellow"}


def register(app: typer.Typer) -> None:
    """Top-level commands; each finds its client factory through its own Typer context."""
    app.command("boot")(boot_command)
    app.command("list")(list_command)
    app.command("show")(show_command)
    app.command("delete")(delete_command)
    app.command("explain")(explain_command)


@contextmanager
def _session(
    ctx: typer.Context, url: str, token: str | None, as_json: bool
) -> Iterator[tuple[PcifleetClient, Output]]:
    """The client (from the context's :class:`ClientFactory` if any) and the printer.

    The factory is looked up on the command's own context: this Typer version runs its
    commands on a vendored Click whose current-context stack the real ``click`` module (used
    by :func:`pcifleet.cli.connect.session`) does not see.
    """
    found = ctx.find_object(ClientFactory)
    factory = found if isinstance(found, ClientFactory) else ClientFactory(PcifleetClient)
    out = Output(as_json)
    try:
        with factory.make(url, token) as client:
            yield client, out
    except PcifleetError as exc:
        out.fail(exc)


# --- commands ----------------------------------------------------------------------------------


def boot_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Instance name.")],
    flavor: Flavor,
    project: Project = None,
    nic: Annotated[
        list[str] | None,
        typer.Option("--nic", help="net=NAME[,vnic-type=direct] or port=ID; repeatable."),
    ] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Boot an instance: place it and claim its devices (exit 1 if nothing fits)."""
    with _session(ctx, url, token, as_json) as (client, out):
        nics = [parse_nic(n) for n in nic or ()]
        vm = client.boot(name, flavor, project=project, nics=nics)
        ports = client.list_ports(instance=vm.id) if nics and vm.state != "error" else []
    if as_json:
        out.json(vm)
    else:
        render_instance(out.console, vm)
        if nics:
            print_bindings(out, ports, vm.warnings)
    if vm.state == "error":
        raise typer.Exit(1)


def list_command(
    ctx: typer.Context,
    project: Project = None,
    all_: Annotated[bool, typer.Option("--all", help="Include deleted instances.")] = False,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """List instances (members see their project's)."""
    with _session(ctx, url, token, as_json) as (client, out):
        found = client.list_instances(project=project, include_deleted=all_)
    if as_json:
        out.json(found)
    else:
        out.console.print(instances_table(found))


def show_command(
    ctx: typer.Context,
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Show an instance: its host, NUMA cells and devices per request, or why it failed."""
    with _session(ctx, url, token, as_json) as (client, out):
        vm = client.show_instance(instance_id)
    if as_json:
        out.json(vm)
    else:
        render_instance(out.console, vm)


def delete_command(
    ctx: typer.Context,
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Delete an instance and free its devices."""
    with _session(ctx, url, token, as_json) as (client, out):
        vm = client.delete_instance(instance_id)
    freed = sum(len(r.devices) for r in vm.requests)
    out.done(f"deleted {vm.name} ({vm.id}); {freed} device(s) freed", vm)


def explain_command(
    ctx: typer.Context,
    flavor: Flavor,
    project: Project = None,
    examples: Annotated[int, typer.Option("--examples", help="Hosts shown per outcome.")] = 3,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Dry run: which host a boot would get and how every host fared; claims nothing."""
    with _session(ctx, url, token, as_json) as (client, out):
        result = client.explain(flavor, project=project, examples=examples)
    if as_json:
        out.json(result)
    else:
        render_explain(out.console, result)


# --- rendering ---------------------------------------------------------------------------------


def _cells(cells: list[CellOut]) -> str:
    return ", ".join(str(c.host_cell) for c in cells) or "-"


def _devices(requests: list[RequestOut]) -> str:
    return "; ".join(f"{r.requester}: {', '.join(r.devices) or '-'}" for r in requests) or "-"


def instances_table(found: list[InstanceOut]) -> Table:
    table = Table(title=f"{len(found)} instance(s)")
    for column in ("id", "name", "project", "state", "flavor", "host", "cells", "devices"):
        table.add_column(column, overflow="fold")
    for vm in found:
        style = _STATE_STYLE.get(vm.state, "")
        table.add_row(
            vm.id[:8],
            escape(vm.name),
            escape(vm.project),
            f"[{style}]{vm.state}[/]" if style else vm.state,
            escape(vm.flavor),
            escape(vm.host or "-"),
            _cells(vm.cells),
            escape(_devices(vm.requests)),
        )
    return table


def render_instance(console: Console, vm: InstanceOut) -> None:
    style = _STATE_STYLE.get(vm.state, "")
    console.print(
        f"[bold]{escape(vm.name)}[/] {vm.id}  [{style}]{vm.state}[/]  project {escape(vm.project)}"
        f"  flavor {escape(vm.flavor)} ({vm.vcpus} vCPUs, {vm.memory_mb} MB)"
    )
    if vm.host:
        console.print(f"host {escape(vm.host)}, NUMA cells {_cells(vm.cells)}")
    if vm.requests:
        table = Table("request", "from", "count", "NUMA policy", "devices")
        for r in vm.requests:
            table.add_row(
                escape(r.requester),
                r.requester_kind,
                str(r.count),
                str(r.numa_policy or "-"),
                "\n".join(r.devices) or "-",
            )
        console.print(table)
    if vm.fault:
        console.print(f"[red]{escape(vm.fault.message)}[/]", soft_wrap=True)
        for line in vm.fault.details:
            console.print(f"  - {escape(line)}", soft_wrap=True)


def render_explain(console: Console, result: ExplainOut) -> None:
    chosen = result.chosen
    if chosen is None:
        console.print(f"[red]no valid host[/]: {escape(result.sentence)}", soft_wrap=True)
    else:
        console.print(
            f"[green]would place on {escape(chosen.host)}[/], NUMA cells {_cells(chosen.cells)}:"
            f" {escape(_devices(chosen.requests))}"
        )
    table = Table(title=f"{result.hosts} host(s), {result.passed} passed")
    for column in ("hosts", "outcome", "stage", "examples"):
        table.add_column(column, overflow="fold")
    for group in result.groups:
        examples = "\n".join(
            f"{o.host}: {o.message}" if o.message else o.host for o in group.examples
        )
        table.add_row(
            str(group.count),
            "[green]passed[/]" if group.passed else escape(group.summary),
            group.stage or "-",
            escape(examples),
        )
    console.print(table)
