"""How commands reach the controller: ``--url``/``--token`` (or ``PCIFLEET_URL`` and
``PCIFLEET_TOKEN``), and one client per command invocation.

Tests and the demo run the CLI against an in-process app with no server: they pass a
:class:`ClientFactory` as Click's context object (``CliRunner.invoke(app, args,
obj=ClientFactory.in_process(app))``), and every command builds its client through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import ValidationError

# Typer (pinned) vendors Click; its context carries ``obj`` from ``CliRunner.invoke(obj=...)``.
from typer._click.globals import get_current_context

from pcifleet.cli.output import Output
from pcifleet.client import AsgiApp, PcifleetClient
from pcifleet.domain.errors import InvalidInput, PcifleetError

DEFAULT_URL = "http://127.0.0.1:8774"

Url = Annotated[
    str,
    typer.Option("--url", envvar="PCIFLEET_URL", help="Controller URL.", show_default=True),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="PCIFLEET_TOKEN",
        help="API token (pcifleet token create).",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


@dataclass(frozen=True, slots=True)
class ClientFactory:
    """Builds the client of a command from its ``--url`` and ``--token``."""

    make: Callable[[str, str | None], PcifleetClient]

    @classmethod
    def in_process(cls, app: AsgiApp, token: str | None = None) -> ClientFactory:
        """Every command talks to ``app`` in this process (``token`` unless ``--token``)."""
        return cls(lambda _url, given: PcifleetClient.in_process(app, given or token))


def _factory() -> ClientFactory:
    context = get_current_context(silent=True)
    found: Any = None if context is None else context.find_object(ClientFactory)
    if isinstance(found, ClientFactory):
        return found
    return ClientFactory(PcifleetClient)


@contextmanager
def session(url: str, token: str | None, as_json: bool) -> Iterator[tuple[PcifleetClient, Output]]:
    """The client and the printer of one command; pcifleet errors exit with their code."""
    out = Output(as_json)
    try:
        with _factory().make(url, token) as client:
            yield client, out
    except PcifleetError as exc:
        out.fail(exc)
    except ValidationError as exc:
        out.fail(invalid_options(exc))


def invalid_options(exc: ValidationError) -> InvalidInput:
    """A request model built from options refused them: name the option and the rule."""
    errors = exc.errors()
    problems = [
        f"--{'.'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}" for e in errors
    ]
    first = errors[0]["loc"] if errors else ()
    return InvalidInput("; ".join(problems), field=str(first[0]) if first else "", rule="schema")
