"""Helpers of the CLI tests (a module of its own: test modules import it, not conftest)."""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import Result
from typer.testing import CliRunner

from pcifleet.cli.connect import ClientFactory
from pcifleet.cli.main import app as cli
from pcifleet.control.container import Services


@dataclass
class Cli:
    """Runs ``pcifleet ...`` in-process against the test controller."""

    runner: CliRunner
    factory: ClientFactory
    services: Services

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli, list(args), obj=self.factory)
