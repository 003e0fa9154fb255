"""CLI fixtures: a migrated SQLite database, the app in-process, and a runner whose commands
reach that app through :class:`pcifleet.cli.connect.ClientFactory` (no server, no port)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_kit import Cli
from typer.testing import CliRunner

from pcifleet.cli.connect import ClientFactory
from pcifleet.control.api.app import create_app
from pcifleet.control.container import Services, build_services
from pcifleet.control.services.principal import Role
from pcifleet.control.settings import settings_from_env


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    built = build_services(settings_from_env({}, data_dir=tmp_path), migrate_schema=True)
    yield built
    built.close()


@pytest.fixture
def run(services: Services) -> Cli:
    admin = services.tokens.create(Role.ADMIN)[1]
    factory = ClientFactory.in_process(create_app(services), admin)
    runner = CliRunner(env={"COLUMNS": "200", "NO_COLOR": "1"})
    return Cli(runner, factory, services)
