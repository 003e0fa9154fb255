"""``pcifleet server`` and ``pcifleet token ...``: run the controller and manage its tokens.

Both work on the database directly (the data directory's SQLite file, or
``PCIFLEET_DATABASE_URL``), so the first admin token of a fresh installation is created
before any server runs::

    pcifleet token create --role admin --name ops     # prints the token once
    pcifleet server --port 8774                       # migrates, then serves /v1

``--workers N`` starts N server processes on one port (uvicorn's supervisor); each builds its
app with :func:`pcifleet.control.api.app.app_from_env`, so they share only the database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from pcifleet.cli.connect import AsJson
from pcifleet.cli.output import Column, Output, failures
from pcifleet.control.api.app import ENV_AUTH_MODE, create_app
from pcifleet.control.api.auth import SINGLE_USER_WARNING, AuthMode
from pcifleet.control.api.balance import ENV_WORKER_TABLE, WorkerTable
from pcifleet.control.container import Services, build_services
from pcifleet.control.services.groups import read_groups_file
from pcifleet.control.services.principal import Role
from pcifleet.control.services.tokens import TokenInfo
from pcifleet.control.settings import (
    ENV_DATA_DIR,
    ENV_DATABASE_URL,
    ENV_MAC_PREFIX,
    ENV_MIXED_VNIC_POLICY,
    ENV_NETWORK_VLAN_RANGES,
    ENV_NETWORK_VNI_RANGES,
    ENV_REQUEST_THREADS,
    Settings,
    settings_from_env,
)

token_app = typer.Typer(
    name="token", help="API tokens (works on the database directly).", no_args_is_help=True
)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory (default: $PCIFLEET_DATA_DIR or ~/.local/share/pcifleet).",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL (default: $PCIFLEET_DATABASE_URL or SQLite)."
    ),
]
TOKEN_COLUMNS = (
    Column("ID", lambda t: t.id, no_wrap=True),
    Column("Name", lambda t: t.name),
    Column("Role", lambda t: t.role),
    Column("Project", lambda t: t.project),
    Column("Host", lambda t: t.host),
    Column("Created", lambda t: str(t.created_at)[:19]),
    Column("Revoked", lambda t: t.revoked),
)


def register(app: typer.Typer) -> None:
    app.command("server")(server)
    app.add_typer(token_app)


def open_services(
    data_dir: Path | None, database_url: str | None, overrides: Mapping[str, str] | None = None
) -> Services:
    """Services over the chosen database, migrated to the latest schema.

    ``overrides`` are environment variables set by flags (they win over the environment)."""
    settings = settings_from_env({**os.environ, **(overrides or {})}, data_dir, database_url)
    return build_services(settings, migrate_schema=True)


def network_overrides(
    vlan_ranges: str | None,
    vni_ranges: str | None,
    mac_prefix: str | None,
    mixed_vnic_policy: str | None,
) -> dict[str, str]:
    """The networking flags given, as the environment variables they stand for."""
    given = {
        ENV_NETWORK_VLAN_RANGES: vlan_ranges,
        ENV_NETWORK_VNI_RANGES: vni_ranges,
        ENV_MAC_PREFIX: mac_prefix,
        ENV_MIXED_VNIC_POLICY: mixed_vnic_policy,
    }
    return {name: value for name, value in given.items() if value is not None}


def network_environ(settings: Settings) -> dict[str, str]:
    """The networking settings as environment variables (for worker processes)."""
    return network_overrides(
        settings.network_vlan_ranges,
        settings.network_vni_ranges,
        settings.mac_prefix,
        settings.mixed_vnic_policy,
    )


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8774,
    workers: Annotated[int, typer.Option(help="Server processes sharing the database.", min=1)] = 1,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    single_user: Annotated[
        bool, typer.Option("--single-user", help="No authentication (local demo only).")
    ] = False,
    groups: Annotated[
        Path | None,
        typer.Option(help="Load device groups from this file at start (TOML/YAML/Nova JSON)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    request_threads: Annotated[
        int | None,
        typer.Option(
            "--request-threads",
            min=1,
            help="Requests each server process runs at once; the others wait in line"
            " ($PCIFLEET_REQUEST_THREADS, default 1: scale with --workers).",
        ),
    ] = None,
    vlan_ranges: Annotated[
        str | None,
        typer.Option(
            "--network-vlan-ranges",
            help="VLAN ids to allocate per physnet, e.g. physnet1:1000:1999,physnet2:2000:2999"
            " ($PCIFLEET_NETWORK_VLAN_RANGES).",
        ),
    ] = None,
    vni_ranges: Annotated[
        str | None,
        typer.Option(
            "--network-vni-ranges",
            help="VXLAN VNIs to allocate, e.g. 1:65535 ($PCIFLEET_NETWORK_VNI_RANGES).",
        ),
    ] = None,
    mac_prefix: Annotated[
        str | None,
        typer.Option("--mac-prefix", help="Port MAC prefix, e.g. fa:16:3e ($PCIFLEET_MAC_PREFIX)."),
    ] = None,
    mixed_vnic_policy: Annotated[
        str | None,
        typer.Option(
            "--mixed-vnic-policy",
            help="allow, warn or deny instances mixing direct and macvtap-like vnic types"
            " ($PCIFLEET_MIXED_VNIC_POLICY).",
        ),
    ] = None,
) -> None:
    """Run the controller's REST API (migrates the database first)."""
    out = Output()
    mode = AuthMode.SINGLE_USER if single_user else AuthMode.TOKENS
    overrides = network_overrides(vlan_ranges, vni_ranges, mac_prefix, mixed_vnic_policy)
    if request_threads is not None:
        overrides[ENV_REQUEST_THREADS] = str(request_threads)
    with failures(out):
        services = open_services(data_dir, database_url, overrides)
        if groups is not None:
            loaded = services.groups.load(read_groups_file(groups))
            created, updated = len(loaded.created), len(loaded.updated)
            out.note(f"groups from {groups}: {created} created, {updated} updated")
    if single_user:
        out.note(f"warning: {SINGLE_USER_WARNING}")
    database = services.engine.url.render_as_string()
    out.note(f"pcifleet controller on http://{host}:{port} (database {database})")
    if workers == 1:
        slots = services.settings.request_threads
        app = create_app(services, auth_mode=mode, reap_heartbeats=True, request_slots=slots)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        services.close()
    else:
        _serve_workers(services, mode, host, port, workers, log_level)


def _serve_workers(
    services: Services, mode: AuthMode, host: str, port: int, workers: int, log_level: str
) -> None:
    """N processes on one port: each worker rebuilds its app from the environment set here."""
    os.environ[ENV_DATA_DIR] = str(services.settings.data_dir)
    os.environ[ENV_DATABASE_URL] = services.settings.database_url
    os.environ[ENV_AUTH_MODE] = mode.value
    os.environ.update(network_environ(services.settings))
    os.environ[ENV_REQUEST_THREADS] = str(services.settings.request_threads)
    run_dir = services.settings.data_dir / "run"
    table = WorkerTable.create(run_dir / f"workers-{os.getpid()}.table")
    os.environ[ENV_WORKER_TABLE] = str(table)
    services.close()
    try:
        uvicorn.run(
            "pcifleet.control.api.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
        )
    finally:
        table.unlink(missing_ok=True)


@token_app.command("create")
def create_token(
    role: Annotated[Role, typer.Option(help="admin, member or agent.")],
    project: Annotated[str | None, typer.Option(help="The member's project.")] = None,
    host: Annotated[str | None, typer.Option(help="The agent's host name.")] = None,
    name: Annotated[str | None, typer.Option(help="A name to recognise it by.")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Create a token and print it (it is stored hashed: this is the only time it is shown)."""
    out = Output(as_json)
    with failures(out):
        services = open_services(data_dir, database_url)
        try:
            info, secret = services.tokens.create(role, project=project, host=host, name=name or "")
        finally:
            services.close()
    if as_json:
        out.json(_token_dict(info) | {"token": secret})
        return
    out.console.print(secret, soft_wrap=True)
    out.note(f"token {info.name!r} ({info.role}) created: store it now, it cannot be shown again")


@token_app.command("list")
def list_tokens(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: AsJson = False
) -> None:
    """Every token (never the secrets)."""
    out = Output(as_json)
    with failures(out):
        services = open_services(data_dir, database_url)
        try:
            infos = services.tokens.list()
        finally:
            services.close()
    if as_json:
        out.json({"tokens": [_token_dict(i) for i in infos]})
        return
    out.console.print(out.build_table(infos, TOKEN_COLUMNS))


@token_app.command("revoke")
def revoke_token(
    token_id: str,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Revoke a token (requests with it fail within a few seconds)."""
    out = Output(as_json)
    with failures(out):
        services = open_services(data_dir, database_url)
        try:
            info = services.tokens.revoke(token_id)
        finally:
            services.close()
    out.done(f"token {info.name!r} revoked", _token_dict(info))


def _token_dict(info: TokenInfo) -> dict[str, object]:
    return {
        "id": info.id,
        "name": info.name,
        "role": info.role.value,
        "project": info.project,
        "host": info.host,
        "created_at": info.created_at.isoformat(),
        "revoked": info.revoked,
    }
