"""The pool's pre-ping on PostgreSQL: a ping that fails in any way drops the connection."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from pcifleet.control.db.engine import create_db_engine


def test_a_ping_on_a_connection_stuck_mid_query_reconnects(postgres_url: str) -> None:
    # as when the server closes the socket during the ping: psycopg's connection is left in
    # state ACTIVE, and the ping's autocommit switch raises a ProgrammingError (not one of
    # the disconnect messages SQLAlchemy knows); the request that checked the connection out
    # got a 500 instead of a fresh connection
    engine = create_db_engine(postgres_url)
    try:
        with engine.connect() as connection:
            stuck = connection.connection.dbapi_connection
            assert isinstance(stuck, psycopg.Connection)
        stuck.pgconn.send_query(b"SELECT 1")  # sent, its result never read
        with pytest.raises(psycopg.ProgrammingError, match="can't change 'autocommit' now"):
            engine.dialect.do_ping(stuck)
        assert engine.dialect._do_ping_w_event(stuck) is False  # a disconnect: reconnect
        with engine.connect() as connection:  # the pool hands out a working connection
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
