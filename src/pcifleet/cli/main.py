"""The ``pcifleet`` command: one Typer app; each area registers its commands from its module."""

from __future__ import annotations

import importlib

import typer

from pcifleet import __version__

app = typer.Typer(
    name="pcifleet",
    help="PCI passthrough and SR-IOV device management for a fleet of virtualization hosts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pcifleet {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """pcifleet: discover, pool, schedule, bind and plug PCI devices across a fleet."""


def _register() -> None:
    """Attach every area's commands (imported here so each module stays independent)."""
    # Each area adds one line here: ``importlib.import_module("pcifleet.cli.<area>")
    # .register(app)`` (one line that passes ruff: no import inside the function).
    importlib.import_module("pcifleet.cli.host").register(app)
    importlib.import_module("pcifleet.cli.demo").register(app)
    importlib.import_module("pcifleet.cli.instances").register(app)
    importlib.import_module("pcifleet.cli.controller").register(app)
    importlib.import_module("pcifleet.cli.inventory").register(app)
    importlib.import_module("pcifleet.cli.catalog").register(app)
    importlib.import_module("pcifleet.cli.audit").register(app)
    importlib.import_module("pcifleet.cli.agent").register(app)
    importlib.import_module("pcifleet.cli.instance_xml").register(app)
    importlib.import_module("pcifleet.cli.networks").register(app)
    importlib.import_module("pcifleet.cli.migrate").register(app)


_register()
