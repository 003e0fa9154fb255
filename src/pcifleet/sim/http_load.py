"""Drive real controller processes over HTTP: the end-to-end concurrency tests and the HTTP
boot benchmark (``benchmarks/http_boot.py``) share this.

- :func:`create_database` / :func:`drop_database`: a throwaway PostgreSQL database;
- :func:`seed_fleet`: N simulated hosts written in bulk (Core ``INSERT``s, hosts up with a fresh
  heartbeat) — the fleet is the stage, not what is measured, so it skips the agents' path;
- :func:`create_catalog`: device groups and flavors whose mix makes PFs and their VFs compete
  (a PF boot needs every VF of the PF free; a VF boot blocks its PF);
- :class:`Controller`: one ``pcifleet server`` process (``--workers N`` optional) on 127.0.0.1
  and an ephemeral port; :meth:`Controller.kill` is ``kill -9``;
- :func:`run_load`: boots (and deletes) from parallel client threads spread over the
  controllers, as a load balancer would; latencies and outcomes per request.
"""

from __future__ import annotations

import datetime as dt
import gc
import http.client
import json
import math
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import httpx
from sqlalchemy import Engine, create_engine, insert, make_url, text

from pcifleet.control.container import Services
from pcifleet.control.db.models import Base
from pcifleet.control.db.repo import cells_to_json, device_facts
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.principal import LOCAL_ADMIN, Role
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.request import DeviceMatch
from pcifleet.domain.tags import Tags

#: how the tests start the CLI in a child process (the venv's interpreter, no console script)
LAUNCH: Final = "import sys; from pcifleet.cli.main import app; sys.argv[0] = 'pcifleet'; app()"
#: the controllers of a load run must not mark the seeded hosts down mid-run
HEARTBEAT_TIMEOUT_S: Final = 3600
#: four NICs (two per NUMA node) with 16 VFs each, and two GPUs
NICS: Final = (
    ("0000:18:00.0", "physnet1", 0),
    ("0000:1a:00.0", "physnet2", 0),
    ("0000:86:00.0", "physnet1", 1),
    ("0000:88:00.0", "physnet2", 1),
)
VFS_PER_PF: Final = 16
GPUS: Final = (("0000:3b:00.0", 0), ("0000:d8:00.0", 1))
CELLS: Final = tuple(NumaCell(i, i, frozenset(range(32 * i, 32 * i + 32)), 262_144) for i in (0, 1))
#: client keep-alive, below uvicorn's default of 5 s
KEEPALIVE_S: Final = 2.0
#: flavor -> weight of the boot mix
BOOT_MIX: Final = (("vf", 55), ("vf2", 15), ("pf", 15), ("gpu", 15))


# --- database ---------------------------------------------------------------------------------


def create_database(admin_url: str, prefix: str = "pcifleet_load") -> str:
    """Create an empty database next to ``admin_url``'s; its URL (raises when unreachable)."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    admin = _admin_engine(admin_url)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url`` even if connections remain or are refused."""
    name = make_url(url).database
    admin = _admin_engine(admin_url)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _admin_engine(admin_url: str) -> Engine:
    return create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )


def host_devices(vfs_per_pf: int = VFS_PER_PF) -> list[Device]:
    """The assignable devices of one simulated host (by default 70: 4 PFs, 64 VFs, 2 GPUs)."""
    devices: list[Device] = []
    for address, physnet, node in NICS:
        pf = PciAddress.parse(address)
        tags = Tags({"physical_network": physnet})
        devices.append(Device(pf, "8086", "1572", DeviceType.PF, "020000", node, tags=tags))
        devices.extend(
            Device(
                pf.offset(16 + i),
                "8086",
                "154c",
                DeviceType.VF,
                "020000",
                node,
                pf,
                i,
                "iavf",
                tags=tags,
            )
            for i in range(vfs_per_pf)
        )
    for address, node in GPUS:
        devices.append(
            Device(PciAddress.parse(address), "10de", "2330", DeviceType.PCI, "030200", node)
        )
    return devices


def seed_fleet(
    engine: Engine,
    hosts: int,
    *,
    batch: int = 100,
    devices: Sequence[Device] | None = None,
    first: int = 0,
) -> int:
    """Insert ``hosts`` up hosts (``sim-<first>``, ...) with their devices (each host's:
    ``devices``, else :func:`host_devices`) in bulk; the number of device rows."""
    facts = [(str(d.address), device_facts(d)) for d in devices or host_devices()]
    cells = cells_to_json(CELLS)
    now = dt.datetime.now(dt.UTC)
    host_table = Base.metadata.tables["hosts"]
    device_table = Base.metadata.tables["devices"]
    for start in range(0, hosts, batch):
        ids = [str(uuid.uuid4()) for _ in range(start, min(start + batch, hosts))]
        host_rows = [
            {
                "id": host_id,
                "name": f"sim-{first + start + i:05d}",
                "state": "up",
                "disabled": False,
                "cells": cells,
                "physnets": {},
                "generation": 1,
                "inventory_generation": 1,
                "cpu_allocation_ratio": 1.0,
                "last_heartbeat": now,
                "last_report": now,
                "created_at": now,
                "updated_at": now,
            }
            for i, host_id in enumerate(ids)
        ]
        device_rows = [
            {
                "id": str(uuid.uuid4()),
                "host_id": host_id,
                "address": address,
                "state": "available",
                "vanished": False,
                "updated_at": now,
                **values,
            }
            for host_id in ids
            for address, values in facts
        ]
        with engine.begin() as connection:
            connection.execute(insert(host_table), host_rows)
            connection.execute(insert(device_table), device_rows)
    return hosts * len(facts)


def create_catalog(services: Services) -> str:
    """The groups and flavors of :data:`BOOT_MIX`; an admin token's secret for the load."""
    physnet1 = DeviceMatch.of(physical_network="physnet1")
    services.groups.create(LOCAL_ADMIN, DeviceGroup("nic-vf", (physnet1,), DeviceType.VF))
    services.groups.create(LOCAL_ADMIN, DeviceGroup("nic-pf", (physnet1,), DeviceType.PF))
    services.groups.create(LOCAL_ADMIN, DeviceGroup("gpu", (DeviceMatch.of(vendor_id="10de"),)))
    for name, alias in (
        ("vf", "nic-vf:1"),
        ("vf2", "nic-vf:2"),
        ("pf", "nic-pf:1"),
        ("gpu", "gpu:1"),
    ):
        flavor = parse_flavor(name, 2, 2048, {"pci_passthrough:alias": alias})
        services.flavors.create(LOCAL_ADMIN, flavor)
    _, secret = services.tokens.create(Role.ADMIN, name="load")
    return secret


# --- controller processes ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Controller:
    """One ``pcifleet server`` process (with ``workers`` uvicorn workers) on 127.0.0.1."""

    database_url: str
    data_dir: Path
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, environ: Mapping[str, str] | None = None) -> Controller:
        args = ["server", "--port", str(self.port), "--workers", str(self.workers)]
        args += ["--database-url", self.database_url, "--data-dir", str(self.data_dir)]
        env = dict(os.environ if environ is None else environ)
        env.setdefault("PCIFLEET_HEARTBEAT_TIMEOUT", str(HEARTBEAT_TIMEOUT_S))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"controller-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, *args, "--log-level", "warning"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        return self

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Until ``/v1/health`` answers 200; RuntimeError when the process dies or times out."""
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while True:
                try:
                    if client.get("/v1/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if not self.alive or time.monotonic() > deadline:
                    raise RuntimeError(f"controller on {self.url} not healthy: {self.log_tail()}")
                time.sleep(0.2)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """``kill -9`` the whole process group (the server and its workers), at once."""
        if self.process is not None and self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGINT (a clean shutdown), then SIGKILL if it does not end in time."""
        if self.process is None or not self.alive:
            return
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# --- load -----------------------------------------------------------------------------------------

Kind = Literal["boot", "delete"]


@dataclass(frozen=True, slots=True)
class Op:
    kind: Kind
    #: the flavor of a boot (unused by a delete, which takes any instance booted earlier)
    flavor: str = ""


def boot_plan(count: int, seed: int = 7, mix: Sequence[tuple[str, int]] = BOOT_MIX) -> list[Op]:
    rng = random.Random(seed)
    names = [name for name, _ in mix]
    weights = [weight for _, weight in mix]
    return [Op("boot", flavor) for flavor in rng.choices(names, weights, k=count)]


def interleaved_plan(count: int, delete_share: float = 0.4, seed: int = 11) -> list[Op]:
    """Boots with deletes of earlier guests mixed in (``delete_share`` of the operations)."""
    rng = random.Random(seed)
    boots = iter(boot_plan(count, seed))
    return [Op("delete") if rng.random() < delete_share else next(boots) for _ in range(count)]


@dataclass
class LoadResult:
    #: seconds of each successful request, by kind
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"boot": [], "delete": []})
    #: "boot:active", "boot:error", "delete:deleted", "boot:http-503", "boot:transport", ...
    outcomes: Counter[str] = field(default_factory=Counter)
    #: transport failures by exception name (ConnectError, ReadTimeout, ...)
    errors: Counter[str] = field(default_factory=Counter)
    #: instances that came back active and were not deleted by the load
    active: set[str] = field(default_factory=set)
    elapsed_s: float = 0.0

    def rate(self, kind: str = "boot") -> float:
        return len(self.latencies[kind]) / self.elapsed_s if self.elapsed_s else 0.0

    def percentile_ms(self, fraction: float, kind: str = "boot") -> float:
        """Nearest-rank percentile of the successful requests, in milliseconds."""
        values = sorted(self.latencies[kind])
        if not values:
            return 0.0
        rank = min(len(values), max(1, math.ceil(fraction * len(values))))
        return values[rank - 1] * 1000


class _Shared:
    """What the client threads share: the next operation, the guests to delete, the result."""

    def __init__(self, ops: Sequence[Op], result: LoadResult, seed: int) -> None:
        self._ops = iter(enumerate(ops))
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.result = result

    def next_op(self) -> tuple[int, Op] | None:
        with self._lock:
            return next(self._ops, None)

    def take_victim(self) -> str | None:
        with self._lock:
            if not self.result.active:
                return None
            victim = self._rng.choice(sorted(self.result.active))
            self.result.active.discard(victim)
            return victim

    def record(
        self, kind: str, outcome: str, seconds: float | None, instance: str = "", error: str = ""
    ) -> None:
        with self._lock:
            self.result.outcomes[f"{kind}:{outcome}"] += 1
            if error:
                self.result.errors[error] += 1
            if seconds is not None:
                self.result.latencies[kind].append(seconds)
            if kind == "boot" and outcome == "active":
                self.result.active.add(instance)


class _Connection:
    """One keep-alive HTTP/1.1 connection of a client thread to one controller.

    The standard library's client, not httpx: the load generator shares the machine with the
    controllers and the database it measures, and httpx spent ~1.3 ms of CPU per request here
    (four times this). A connection idle longer than :data:`KEEPALIVE_S` is reopened before
    it is used (uvicorn drops idle ones after 5 s: a request never goes out on a connection
    the server is closing); one that failed is dropped (the next request reconnects).
    """

    def __init__(self, url: str, token: str, timeout_s: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._timeout_s = timeout_s
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._http: http.client.HTTPConnection | None = None
        self._used = 0.0

    def send(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        """Status and body of one request; transport failures raise OSError/HTTPException."""
        if self._http is None or time.monotonic() - self._used > KEEPALIVE_S:
            self.close()
            self._http = http.client.HTTPConnection(*self._address, timeout=self._timeout_s)
        data = None if body is None else json.dumps(body).encode()
        try:
            self._http.request(method, path, body=data, headers=self._headers)
            response = self._http.getresponse()
            content = response.read()
        except BaseException:
            self.close()
            raise
        self._used = time.monotonic()
        return response.status, content

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def _send(connection: _Connection, shared: _Shared, number: int, op: Op) -> None:
    victim = shared.take_victim() if op.kind == "delete" else None
    if op.kind == "delete" and victim is None:
        op = Op("boot", BOOT_MIX[0][0])
    began = time.perf_counter()
    try:
        if victim is not None:
            status, content = connection.send("DELETE", f"/v1/instances/{victim}")
        else:
            boot = {"name": f"vm-{number}", "flavor": op.flavor}
            status, content = connection.send("POST", "/v1/instances", boot)
    except (OSError, http.client.HTTPException) as exc:
        shared.record(op.kind, "transport", None, error=type(exc).__name__)
        return
    seconds = time.perf_counter() - began
    if status >= 400:
        shared.record(op.kind, f"http-{status}", None)
        return
    body = json.loads(content)
    shared.record(op.kind, str(body.get("state")), seconds, str(body.get("id")))


def _client_loop(urls: Sequence[str], token: str, shared: _Shared, timeout_s: float) -> None:
    connections = [_Connection(url, token, timeout_s) for url in urls]
    try:
        while (item := shared.next_op()) is not None:
            number, op = item
            _send(connections[number % len(connections)], shared, number, op)
    finally:
        for connection in connections:
            connection.close()


def run_load(
    urls: Sequence[str],
    token: str,
    ops: Sequence[Op],
    *,
    concurrency: int = 16,
    timeout_s: float = 30.0,
    result: LoadResult | None = None,
    seed: int = 3,
    pinned: bool = False,
) -> LoadResult:
    """Send ``ops`` from ``concurrency`` threads, request i to ``urls[i % len(urls)]``; with
    ``pinned``, client k sends all its requests to ``urls[k % len(urls)]`` instead (each
    controller gets an even share of the clients' connections, as behind an L4 round-robin
    balancer).

    ``result`` carries the guests of an earlier run over (deletes pick among them).
    """
    chosen = result or LoadResult()
    shared = _Shared(ops, chosen, seed)
    targets = [[urls[k % len(urls)]] if pinned else urls for k in range(concurrency)]
    threads = [
        threading.Thread(target=_client_loop, args=(mine, token, shared, timeout_s), daemon=True)
        for mine in targets
    ]
    # the collector's full passes over this process's heap (the seeded fleet, SQLAlchemy)
    # took ~90 ms and stalled every client thread at once: measured as the controllers' p99
    gc.collect()
    gc.freeze()
    began = time.perf_counter()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.unfreeze()
    chosen.elapsed_s = time.perf_counter() - began
    return chosen
