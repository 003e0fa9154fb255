"""``pcifleet token ...`` on the database and ``pcifleet server`` as a real process."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from pcifleet.cli.main import app as cli
from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.groups import GroupCreate, MatchIn
from pcifleet.domain.errors import Unauthorized, Unavailable

runner = CliRunner(env={"COLUMNS": "200", "PCIFLEET_DATABASE_URL": None})
LAUNCH = "import sys; from pcifleet.cli.main import app; sys.argv[0] = 'pcifleet'; app()"


def test_token_create_list_revoke_on_the_data_dir(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    created = runner.invoke(cli, ["token", "create", "--role", "member", "--project", "p", *data])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert len(secret) == 43 and "cannot be shown again" in created.stderr
    assert (tmp_path / "pcifleet.db").exists()
    document = json.loads(
        runner.invoke(
            cli, ["token", "create", "--role", "agent", "--host", "h1", "--json", *data]
        ).stdout
    )
    assert (document["role"], document["host"], len(document["token"])) == ("agent", "h1", 43)
    listed = json.loads(runner.invoke(cli, ["token", "list", "--json", *data]).stdout)["tokens"]
    assert sorted(t["role"] for t in listed) == ["agent", "member"]
    assert secret not in json.dumps(listed)
    revoked = runner.invoke(cli, ["token", "revoke", document["id"], *data])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    table = runner.invoke(cli, ["token", "list", *data]).stdout
    assert "member-p" in table and "agent-h1" in table


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--role", "member"], "project"),
        (["--role", "admin", "--host", "h1"], "host"),
    ],
)
def test_token_scope_errors_exit_2(tmp_path: Path, args: list[str], field: str) -> None:
    result = runner.invoke(cli, ["token", "create", *args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert field in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    with PcifleetClient(url, timeout=2) as client:
        while True:
            try:
                client.health()
                return
            except Unavailable:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@contextmanager
def _serve(data_dir: Path, port: int, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    args = ["server", "--port", str(port), "--workers", str(workers), "--data-dir", str(data_dir)]
    args += ["--request-threads", str(workers)]  # 1 (the default) and 2
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args, "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_server_serves_the_api_over_a_socket(tmp_path: Path, workers: int) -> None:
    token = runner.invoke(
        cli, ["token", "create", "--role", "admin", "--data-dir", str(tmp_path)]
    ).stdout.strip()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with _serve(tmp_path, port, workers) as process:
        _wait_healthy(url, process)
        with PcifleetClient(url, token) as client:
            created = client.create_group(
                GroupCreate(name="gpu", match=[MatchIn(vendor_id="10de")])
            )
            names = {client.show_group("gpu").id for _ in range(4)}
            assert names == {created.id}
        with PcifleetClient(url, "wrong") as stranger, pytest.raises(Unauthorized):
            stranger.list_groups()
    assert process.returncode is not None


@pytest.mark.slow
def test_server_workers_share_kept_open_connections_evenly(tmp_path: Path) -> None:
    # 8 clients keep their connection open; the kernel spreads them over the 2 workers as it
    # likes, and a worker over its share closes one connection at a time until each holds 4
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with _serve(tmp_path, port, 2) as process:
        _wait_healthy(url, process)
        tables = list((tmp_path / "run").glob("workers-*.table"))
        assert len(tables) == 1
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(8)]
        closes = _keep_asking(connections, seconds=3.0)
        held = sorted(_established(worker, port) for worker in _workers(process.pid))
        for connection in connections:
            connection.close()
    assert held == [4, 4], f"connections per worker: {held} ({closes} closed by the server)"
    assert not tables[0].exists()  # the server removed its table when it stopped


def _keep_asking(connections: list[http.client.HTTPConnection], seconds: float) -> int:
    """A thread per connection sends health checks for ``seconds``; the connections stay
    open. How many responses said ``Connection: close``."""
    closes = []
    stop = time.monotonic() + seconds

    def ask(connection: http.client.HTTPConnection) -> None:
        while time.monotonic() < stop:
            connection.request("GET", "/v1/health")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
            if response.getheader("connection") == "close":
                closes.append(1)
                connection.connect()  # reopen now: the count is taken while connected
            time.sleep(0.005)

    threads = [threading.Thread(target=ask, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(closes)


def _workers(server_pid: int) -> list[psutil.Process]:
    return [
        p for p in psutil.Process(server_pid).children() if "spawn_main" in " ".join(p.cmdline())
    ]


def _established(process: psutil.Process, port: int) -> int:
    return sum(
        1
        for c in process.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )
