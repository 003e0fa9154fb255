"""Database fixtures for controller tests: every test that takes ``engine`` runs on SQLite and
on PostgreSQL.

SQLite gets a fresh file per test. PostgreSQL gets one fresh database per test session
(``pcifleet_test_<random>``, migrated once, dropped at the end) and its tables are emptied
before each test. When the server is unreachable the PostgreSQL variants are skipped with the
reason (``-ra`` prints it).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.engine import create_db_engine, make_sessionmaker, migrate
from pcifleet.control.db.models import Base

#: where the PostgreSQL variants run; PCIFLEET_TEST_POSTGRES_URL points them elsewhere
PG_ADMIN_URL = os.environ.get(
    "PCIFLEET_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session (skip when unreachable)."""
    admin = create_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    name = f"pcifleet_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any connection failure means: no server here
        admin.dispose()
        where = make_url(PG_ADMIN_URL)
        pytest.skip(f"PostgreSQL not reachable at {where.host}:{where.port}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = create_db_engine(url)
    migrate(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _empty_tables(engine: Engine) -> None:
    names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pcifleet.db'}"
        engine = create_db_engine(url)
        migrate(engine)
        engine.dispose()
        return url
    url: str = request.getfixturevalue("postgres_url")
    engine = create_db_engine(url)
    _empty_tables(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_db_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)
