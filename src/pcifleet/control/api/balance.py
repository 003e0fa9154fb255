"""Spread kept-open client connections evenly over the worker processes of one server.

``pcifleet server --workers N`` shares one listening socket between N processes, and the
kernel hands each new connection to whichever process accepts first. Clients that keep their
connection open (agents, the CLI's pooled client, a load balancer's backend pool) then stay
where they landed: with 16 clients on 4 workers, 6/5/3/2 was common, and as each process
runs its requests one after the other, a client of the 6-connection process waited about
three times as long as one of the 2-connection process (``benchmarks/http_boot.py``).

Each worker counts its connections (distinct client addresses that sent a request within
:data:`ACTIVE_S`) and publishes the count in a small table the workers of one server share
(:class:`WorkerTable`, a memory-mapped file the ``server`` command creates). A worker holding
more than its fair share (the ceiling of the average) while another holds less than the
floor answers ``Connection: close`` once; the client reconnects, and the kernel gives the
new connection to a process that is free to accept: usually a less busy one. A balanced
server closes nothing.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: environment variable naming the table of the workers of one server
ENV_WORKER_TABLE: Final = "PCIFLEET_WORKER_TABLE"
#: a client that sent nothing for this long no longer counts as a connection here. An ASGI
#: app never sees a connection close, so a client that left still counts for this long: with
#: 2 s, the 4 connections of the benchmark's warm-up, closed just before its load, made the
#: counts 6/6/6/3 for 16 clients over its first two seconds, and no worker moved any
ACTIVE_S: Final = 0.5
#: how often a worker rewrites its row, idle or not (the serving lifespan's beat)
BEAT_S: Final = 0.5
#: a worker whose row is older than this is gone (a live one writes every beat)
STALE_S: Final = 3.0
#: rows of the table: more workers than any server runs
ROWS: Final = 64
_ROW: Final = struct.Struct("<qdq")  # pid, written at (epoch seconds), connections

Client = tuple[str, int]


class WorkerTable:
    """One row per worker process of a server: pid, when it last wrote, its connections.

    A memory-mapped file shared by the processes; each writes only its own row, so the
    rows need no lock (a reader may see a count a moment old). Taking a row is locked.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with path.open("r+b") as file:
            self._map = mmap.mmap(file.fileno(), ROWS * _ROW.size)

    @staticmethod
    def create(path: Path) -> Path:
        """An empty table at ``path`` (the ``server`` command, before its workers start)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(ROWS * _ROW.size))
        return path

    def take(self, pid: int, now: float) -> int:
        """A row for ``pid``: a free one, or one whose worker is gone; its number."""
        with self.path.open("r+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for row in range(ROWS):
                owner, written, _ = self.read(row)
                if owner in (0, pid) or now - written > STALE_S:
                    self.write(row, pid, now, 0)
                    return row
        raise RuntimeError(f"{self.path}: all {ROWS} worker rows are taken")

    def read(self, row: int) -> tuple[int, float, int]:
        pid, written, connections = _ROW.unpack_from(self._map, row * _ROW.size)
        return pid, written, connections

    def write(self, row: int, pid: int, now: float, connections: int) -> None:
        _ROW.pack_into(self._map, row * _ROW.size, pid, now, connections)

    def others(self, row: int, now: float) -> list[int]:
        """The connection counts of the other live workers."""
        rows = _ROW.iter_unpack(self._map[: ROWS * _ROW.size])  # one copy: runs per response
        return [
            connections
            for number, (pid, written, connections) in enumerate(rows)
            if pid and number != row and now - written <= STALE_S
        ]


class ConnectionBalance:
    """This worker's side: which clients it serves, and whether to send one elsewhere."""

    def __init__(
        self, table: WorkerTable, *, clock: Callable[[], float] = time.time, pid: int = 0
    ) -> None:
        self._table = table
        self._clock = clock
        self._pid = pid or os.getpid()
        self._row = table.take(self._pid, clock())
        self._clients: dict[Client, float] = {}
        self._lock = threading.Lock()

    @property
    def connections(self) -> int:
        return len(self._clients)

    def seen(self, client: Client) -> None:
        """``client`` sent a request."""
        now = self._clock()
        with self._lock:
            fresh = client not in self._clients
            self._clients[client] = now
        if fresh:
            self.publish()

    def publish(self) -> None:
        """Forget quiet clients and write this worker's row (every request of a new
        client, and every beat so that the others know this worker is alive)."""
        now = self._clock()
        self._table.write(self._row, self._pid, now, self._active(now))

    def _active(self, now: float) -> int:
        """Forget the clients quiet for :data:`ACTIVE_S`; how many are left."""
        with self._lock:
            quiet = [c for c, last in self._clients.items() if now - last > ACTIVE_S]
            for client in quiet:
                del self._clients[client]
            return len(self._clients)

    def send_away(self, client: Client) -> bool:
        """True when ``client``'s connection should close after this response: this
        worker holds more than its fair share and another holds less. The client is
        forgotten here (it reconnects, wherever the kernel puts it)."""
        if client not in self._clients:
            return False
        now = self._clock()
        others = self._table.others(self._row, now)
        if not others:
            return False
        mine = self._active(now)
        total = mine + sum(others)
        workers = len(others) + 1
        over = mine > -(-total // workers)
        if not over or min(others) >= total // workers:
            return False
        with self._lock:
            self._clients.pop(client, None)
        self.publish()
        return True


class Rebalance:
    """ASGI middleware: count the clients, and close a connection that should move."""

    def __init__(self, app: ASGIApp, balance: ConnectionBalance) -> None:
        self.app = app
        self.balance = balance

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client:
            await self.app(scope, receive, send)
            return
        address = (str(client[0]), int(client[1]))
        self.balance.seen(address)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and self.balance.send_away(address):
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def table_from_env(environ: Mapping[str, str]) -> WorkerTable | None:
    """The table the ``server`` command set up for its workers, if any."""
    path = environ.get(ENV_WORKER_TABLE)
    return WorkerTable(Path(path)) if path else None
