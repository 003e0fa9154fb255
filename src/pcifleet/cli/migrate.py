"""``pcifleet migrate INSTANCE`` and ``pcifleet migration show|complete|abort INSTANCE``.

``migrate`` first asks the controller for the plan (a dry run: nothing claimed) and prints it
whole, one row per device request and per device-less port: what it is, its vnic type, the
action (transparent, unplug-replug, move, no-device, refused), source -> destination device
and why. Warnings follow in yellow. A refused plan is printed with the refusal in red and the
command exits 6 (a conflict, as the API's 409) without claiming anything; ``--dry-run`` stops
after the plan. Otherwise the migration starts on the destination the plan showed (the one
given with ``--host``, or the scheduler's choice), so what runs is what was shown; the claimed
devices and the migration record are printed.

``migration complete`` and ``abort`` are what the source host's agent reports once the move
is done or failed (admins may also run them by hand to clear a stuck migration).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pcifleet.cli.connect import DEFAULT_URL, AsJson, Token, Url, session
from pcifleet.cli.output import EXIT_CODES, Column, Output
from pcifleet.control.api.schemas.migrations import MigrationOut, PlanItemOut, PlanOut
from pcifleet.domain.errors import Conflict

migration_app = typer.Typer(
    name="migration",
    help="A live migration in flight: show, complete, abort.",
    no_args_is_help=True,
)

Instance = Annotated[str, typer.Argument(help="Instance id.")]

_ACTION_STYLE = {
    "transparent": "green",
    "unplug-replug": "yellow",
    "move": "cyan",
    "no-device": "dim",
    "refused": "bold red",
}
#: a refused plan exits as a conflict does (the API answers it with 409)
REFUSED_EXIT = dict(EXIT_CODES)[Conflict]

MIGRATION_FIELDS = (
    Column("id", lambda m: m.id),
    Column("instance", lambda m: m.instance_id),
    Column("state", lambda m: m.state),
    Column("source host", lambda m: m.source_host),
    Column("destination host", lambda m: m.destination_host),
    Column("reason", lambda m: m.reason),
    Column("updated", lambda m: m.updated_at.isoformat(timespec="seconds")),
)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)
    app.add_typer(migration_app)


# --- rendering ---------------------------------------------------------------------------------


def _devices(item: PlanItemOut) -> str:
    source = ", ".join(item.source) or "-"
    if item.action in ("no-device", "refused"):
        return source
    return f"{source} -> {', '.join(item.destination) or '?'}"


def plan_table(plan: PlanOut, title: str) -> Table:
    """One row per device request and device-less port, the action coloured by kind."""
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for header in ("device/port", "vnic type", "action", "source -> destination", "reason"):
        table.add_column(header, no_wrap=header != "reason")
    for item in plan.items:
        style = _ACTION_STYLE.get(item.action, "")
        table.add_row(
            escape(f"{item.requester_kind} {item.requester}"),
            escape(item.vnic_type or "-"),
            f"[{style}]{escape(item.action)}[/]" if style else escape(item.action),
            escape(_devices(item)),
            escape(item.reason),
        )
    if not plan.items:
        table.caption = "(no devices or ports: nothing for pcifleet to move)"
    return table


def print_plan(out: Output, plan: PlanOut, title: str) -> None:
    """The plan, then its warnings (yellow) and its refusal (red)."""
    out.console.print(plan_table(plan, title))
    for warning in plan.warnings:
        out.console.print(f"[yellow]warning:[/] {escape(warning)}")
    if plan.refusal:
        out.console.print(f"[bold red]refused:[/] {escape(plan.refusal)}")


def _title(plan: PlanOut, what: str) -> str:
    return f"{what} of {plan.instance_id}: {plan.source_host or '?'} -> {plan.destination_host}"


# --- commands ----------------------------------------------------------------------------------


def migrate_command(
    instance_id: Instance,
    host: Annotated[
        str | None, typer.Option("--host", help="Destination host (default: the scheduler's).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan only; claim nothing.")
    ] = False,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Live-migrate an instance: the whole plan is shown before anything runs."""
    with session(url, token, as_json) as (client, out):
        planned = client.migrate(instance_id, host=host, dry_run=True)
        plan = planned.plan
        if dry_run or not plan.allowed:
            if as_json:
                out.json(planned)
            else:
                print_plan(out, plan, _title(plan, "plan"))
            if not plan.allowed:
                raise typer.Exit(REFUSED_EXIT)
            return
        if not as_json:
            print_plan(out, plan, _title(plan, "plan"))
        result = client.migrate(instance_id, host=plan.destination_host)
    if as_json:
        out.json(result)
        return
    out.console.print(plan_table(result.plan, _title(result.plan, "claimed")))
    if result.migration is not None:
        out.done(
            f"migration {result.migration.id} {result.migration.state}: destination devices "
            "claimed; the agent moves the guest and reports complete or abort"
        )


@migration_app.command("show")
def show_command(
    instance_id: Instance, as_json: AsJson = False, url: Url = DEFAULT_URL, token: Token = None
) -> None:
    """The instance's latest migration and its plan."""
    with session(url, token, as_json) as (client, out):
        _print_migration(out, client.show_migration(instance_id))


@migration_app.command("complete")
def complete_command(
    instance_id: Instance, as_json: AsJson = False, url: Url = DEFAULT_URL, token: Token = None
) -> None:
    """The guest runs on the destination: free the source devices, re-bind the ports."""
    with session(url, token, as_json) as (client, out):
        _print_migration(out, client.complete_migration(instance_id))


@migration_app.command("abort")
def abort_command(
    instance_id: Instance,
    reason: Annotated[str, typer.Option("--reason", help="Why the move failed.")],
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """The move failed: free the destination devices; the guest keeps its source."""
    with session(url, token, as_json) as (client, out):
        _print_migration(out, client.abort_migration(instance_id, reason))


def _print_migration(out: Output, migration: MigrationOut) -> None:
    if out.as_json:
        out.json(migration)
        return
    out.console.print(out.build_detail(migration, MIGRATION_FIELDS, title="migration"))
    print_plan(out, migration.plan, _title(migration.plan, "plan"))
