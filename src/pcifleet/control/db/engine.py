"""Engines, sessions and migrations for the controller database.

SQLite is the embedded default (one file under the data directory); PostgreSQL serves several
controller processes. Both are configured here so the rest of the code never branches on the
backend:

- SQLite runs in WAL mode (readers never block the writer), with foreign keys on, a busy
  timeout, and every transaction opened with ``BEGIN IMMEDIATE``: a transaction that reads a
  host's generation and then writes cannot be overtaken between its read and its write, and
  SQLite never answers "database is locked" on a lock upgrade (which a busy timeout cannot
  wait out).
- PostgreSQL goes through psycopg 3 with pre-ping (a restarted server costs one reconnect,
  not an error) and a modest pool per process (several processes share one server).

:func:`migrate` runs Alembic ``upgrade head`` from code; no ``alembic.ini`` is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: an arbitrary constant identifying pcifleet's migration lock among PostgreSQL advisory locks
_MIGRATION_LOCK_ID: Final = 0x70636966  # "pcif"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000


def create_db_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, echo)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    engine = create_engine(
        parsed,
        echo=echo,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_recycle=1800,
    )
    event.listen(engine, "handle_error", _failed_ping_is_a_disconnect)
    return engine


def _failed_ping_is_a_disconnect(context: ExceptionContext) -> None:
    """A pool's ``SELECT 1`` that fails in any way means the connection is unusable: drop it
    and connect again (a database that is really gone then fails to connect: a 503).

    SQLAlchemy only recognises disconnect messages, and a server that closed the socket in
    the middle of the ping left psycopg's connection in state ACTIVE, so restoring its
    autocommit raised "can't change 'autocommit' now" (a ProgrammingError): an API request
    answered 500 instead of 503 while the database went away.
    """
    if context.is_pre_ping:
        context.is_disconnect = True


def _sqlite_engine(url: URL, echo: bool) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30.0}
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event open transactions instead of pysqlite's own (deferred)
    # BEGIN, so that we can open them IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (services return them afterwards)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration built in code, pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to run from several processes at once."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
