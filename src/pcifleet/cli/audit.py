"""``pcifleet audit``: check the database's invariants and print every violation.

Works on the database directly (the data directory's SQLite file, ``--database-url`` or
``PCIFLEET_DATABASE_URL``), like ``pcifleet token``: an operator can audit a fleet whose
controllers are down, and CI can audit after a load test. The exit code is the verdict:
0 when clean, 1 on any violation (3 when the database cannot be reached).
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy.exc
import typer

from pcifleet.cli.connect import AsJson
from pcifleet.cli.controller import DatabaseUrl, DataDir
from pcifleet.cli.output import Column, Output, failures
from pcifleet.control.audit import AuditReport, Violation, audit_database
from pcifleet.control.db.engine import create_db_engine
from pcifleet.control.settings import settings_from_env
from pcifleet.domain.errors import Unavailable

VIOLATION_COLUMNS = (
    Column("Code", lambda v: v.code.value, no_wrap=True),
    Column("Host", lambda v: v.host),
    Column("Subject", lambda v: v.subject, no_wrap=True),
    Column("Problem", lambda v: v.message),
)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(
    data_dir: DataDir = None, database_url: DatabaseUrl = None, as_json: AsJson = False
) -> None:
    """Check the database's invariants (devices, PF/VF coupling, placements, pools)."""
    out = Output(as_json)
    with failures(out):
        report = _run(settings_from_env(os.environ, data_dir, database_url).database_url)
    if as_json:
        out.json(report_dict(report))
    else:
        _print(out, report)
    if not report.clean:
        raise typer.Exit(1)


def _run(url: str) -> AuditReport:
    engine = create_db_engine(url)
    try:
        return audit_database(engine)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        raise Unavailable(f"the database cannot be read: {type(exc).__name__}") from None
    finally:
        engine.dispose()


def _print(out: Output, report: AuditReport) -> None:
    counts = (
        f"{report.hosts} hosts, {report.devices} devices ({report.held} in use), "
        f"{report.instances} instances"
    )
    if report.clean:
        out.done(f"no violation: {counts}")
        return
    out.console.print(out.build_table(report.violations, VIOLATION_COLUMNS))
    out.note(f"{len(report.violations)} violations: {counts}")


def _violation_dict(violation: Violation) -> dict[str, Any]:
    return {
        "code": violation.code.value,
        "host": violation.host,
        "subject": violation.subject,
        "message": violation.message,
    }


def report_dict(report: AuditReport) -> dict[str, Any]:
    return {
        "clean": report.clean,
        "hosts": report.hosts,
        "devices": report.devices,
        "held": report.held,
        "instances": report.instances,
        "violations": [_violation_dict(v) for v in report.violations],
    }
