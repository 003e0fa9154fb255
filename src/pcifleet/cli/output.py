"""How every command prints: Rich tables for people, ``--json`` for scripts, one error format.

Commands describe *what* to show (the API's response models and a list of columns); this
module decides *how*: a table, a two-column detail view, or the JSON document of the models
exactly as the API returned them. Errors go to stderr with their stable code, and the exit
code says what kind of failure it was, so scripts can branch without parsing text:

==========  ================================================
exit code   meaning
==========  ================================================
1           any other error
2           invalid input (a usage error, like Click's own)
3           the controller (or its database) is unavailable
4           unauthorized or forbidden
5           not found
6           conflict (exists already, changed concurrently)
==========  ================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import track
from rich.table import Table

from pcifleet.domain import errors

T = TypeVar("T")

EXIT_CODES: tuple[tuple[type[errors.PcifleetError], int], ...] = (
    (errors.InvalidInput, 2),
    (errors.Unavailable, 3),
    (errors.Unauthorized, 4),
    (errors.Forbidden, 4),
    (errors.NotFound, 5),
    (errors.Conflict, 6),
)


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: a header and how to read the cell from an item."""

    header: str
    get: Callable[[Any], object]
    justify: str = "left"
    #: never truncate this column (ids people copy and paste)
    no_wrap: bool = False


def cell(value: object) -> str:
    """The text of one value: ``-`` for nothing, lists comma-joined, mappings ``k=v``."""
    if value is None or value in ("", [], {}):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value)
    if hasattr(value, "value") and isinstance(value.value, str):
        return str(value.value)
    return str(value)


def _plain(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return {k: _plain(v) if isinstance(v, BaseModel | list) else v for k, v in data.items()}
    return [_plain(item) for item in data]


class Output:
    """The printer of one command invocation (``as_json`` from its ``--json`` flag)."""

    def __init__(self, as_json: bool = False, console: Console | None = None) -> None:
        self.as_json = as_json
        self.console = console or Console(highlight=False)
        self.errors = Console(stderr=True, highlight=False)

    def json(self, data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
        typer.echo(json.dumps(_plain(data), indent=2, sort_keys=False))

    def table(
        self, items: Sequence[T], columns: Sequence[Column], *, title: str | None = None
    ) -> None:
        """A list: a table (``--json``: the list of models)."""
        if self.as_json:
            self.json(items)  # type: ignore[arg-type]
            return
        self.console.print(self.build_table(items, columns, title=title))

    def build_table(
        self, items: Iterable[T], columns: Sequence[Column], *, title: str | None = None
    ) -> Table:
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column.header, justify=column.justify, no_wrap=column.no_wrap)  # type: ignore[arg-type]
        count = 0
        for item in items:
            table.add_row(*(escape(cell(column.get(item))) for column in columns))
            count += 1
        if count == 0:
            table.caption = "(none)"
        return table

    def detail(
        self, item: BaseModel, fields: Sequence[Column], *, title: str | None = None
    ) -> None:
        """One object: a field/value view (``--json``: the model)."""
        if self.as_json:
            self.json(item)
            return
        self.console.print(self.build_detail(item, fields, title=title))

    def build_detail(
        self, item: object, fields: Sequence[Column], *, title: str | None = None
    ) -> Table:
        table = Table(title=title, title_justify="left", show_header=False, show_edge=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for field in fields:
            table.add_row(field.header, escape(cell(field.get(item))))
        return table

    def done(self, message: str, data: BaseModel | dict[str, Any] | None = None) -> None:
        """A confirmation for people; with ``--json`` the affected object (or ``{}``)."""
        if self.as_json:
            self.json(data if data is not None else {})
            return
        self.console.print(f"[green]✓[/] {escape(message)}")

    def note(self, message: str) -> None:
        """A remark for people (stderr, so it never mixes with ``--json`` output)."""
        self.errors.print(escape(message))

    def fail(self, exc: errors.PcifleetError) -> NoReturn:
        """Print the error (stderr) and exit with the code of its kind."""
        code = exc.fields.get("code") or exc.code
        self.errors.print(f"[red]error:[/] {escape(str(exc))} [dim]({escape(str(code))})[/]")
        raise typer.Exit(exit_code(exc))

    @contextmanager
    def status(self, message: str) -> Iterator[None]:
        """A spinner while something runs (silent with ``--json`` or off a terminal)."""
        if self.as_json or not self.errors.is_terminal:
            yield
            return
        with self.errors.status(escape(message)):
            yield

    def progress(self, items: Sequence[T], description: str) -> Iterable[T]:
        """Iterate with a progress bar on stderr (plain iteration with ``--json``)."""
        if self.as_json or not self.errors.is_terminal:
            return items
        return track(items, description=description, console=self.errors, transient=True)


def exit_code(exc: errors.PcifleetError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return 1


@contextmanager
def failures(out: Output) -> Iterator[None]:
    """Turn pcifleet errors raised inside into a printed error and an exit code."""
    try:
        yield
    except errors.PcifleetError as exc:
        out.fail(exc)
