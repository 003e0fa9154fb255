"""Process helpers shared by the end-to-end tests: start real ``pcifleet`` processes, run
CLI commands, wait for conditions and stop everything cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcifleet.client import PcifleetClient
from pcifleet.domain.errors import Unavailable

PCIFLEET = str(Path(sys.executable).parent / "pcifleet")
DEADLINE = 30.0


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scratch_dir() -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="pcifleet-e2e-", dir=base))


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [PCIFLEET, *args], capture_output=True, text=True, timeout=60, env=clean_env(), check=False
    )
    if check:
        assert done.returncode == 0, f"pcifleet {' '.join(args)}: {done.stderr}"
    return done


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCIFLEET_")}
    return env | {"COLUMNS": "200"}


def start(name: str, logs: Path, *args: str) -> Proc:
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [PCIFLEET, *args], stdout=sink, stderr=subprocess.STDOUT, env=clean_env()
        )
    return Proc(name, process, log)


def wait_for(what: str, probe: Callable[[], bool], procs: list[Proc]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not probe():
        dead = [p for p in procs if p.process.poll() is not None]
        assert not dead, f"{dead[0].name} exited while waiting for {what}:\n{dead[0].text()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def healthy(url: str) -> bool:
    with PcifleetClient(url, timeout=1) as client:
        try:
            client.health()
        except Unavailable:
            return False
        return True


def stop_all(procs: list[Proc]) -> dict[str, int]:
    """SIGTERM each process, wait, and kill (then reap) any that does not exit in time."""
    codes: dict[str, int] = {}
    for proc in procs:
        if proc.process.poll() is None:
            proc.process.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            codes[proc.name] = proc.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            codes[proc.name] = proc.process.wait()
    return codes
