"""Agent faults end to end: a real controller and real ``pcifleet agent`` processes.

1. An agent killed with SIGKILL while it has a plugged instance, then restarted, reconciles:
   the instance is neither lost nor plugged twice (the hypervisor, a fake kept in a JSON file
   as libvirt would keep it across an agent restart, still holds exactly the one domain; the
   controller's allocation is unchanged), and a delete afterwards unplugs it and gives its VF
   back exactly as it was before the plug — even the MAC the guest changed while the agent was
   down. The VF table is a fake kept in a JSON file too (no SR-IOV NIC on the test machines).
2. An agent whose heartbeats stop (SIGSTOP) gets its host marked down by the controller's
   reaper (a 2 s heartbeat timeout here); a boot only that host could take fails naming it,
   other hosts still take guests, and after SIGCONT the host comes back up and takes guests.

Every process is stopped (or killed) in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e_kit import (
    PCIFLEET,
    Proc,
    clean_env,
    cli,
    cli_json,
    free_port,
    healthy,
    stop_all,
    wait_for,
)

from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.flavors import FlavorCreate
from pcifleet.control.api.schemas.hosts import HostSummaryOut
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import build_tree

GPU_PROFILE = "demo-gpu-a100"
NFV_PROFILE = "demo-nfv-e810-qat"
SPECS = (
    '{"exclude": true, "devname": "eno1"}',
    '{"vendor_id": "10de"}',
    '{"vendor_id": "8086", "product_id": "4941"}',
    # the E810 PFs (their netdev names the PF a VF is configured on) and their VFs
    '{"vendor_id": "8086", "product_id": "159b"}',
    '{"vendor_id": "8086", "product_id": "1889"}',
)
INTERVAL = "0.3"
GUEST_MAC = "fa:16:3e:de:ad:01"


class Fleet:
    """One controller and its agents in a scratch directory; everything torn down at the end."""

    def __init__(self, scratch: Path, **server_env: str) -> None:
        self.scratch = scratch
        self.logs = scratch / "logs"
        self.logs.mkdir()
        self.data = scratch / "data"
        self.spec = scratch / "device_spec"
        self.spec.write_text("\n".join(SPECS) + "\n", encoding="utf-8")
        self.admin = cli("token", "create", "--role", "admin", "--data-dir", str(self.data))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.auth = ["--url", self.url, "--token", self.admin.stdout.strip()]
        self.procs: list[Proc] = []
        self.client = PcifleetClient(self.url, self.admin.stdout.strip(), timeout=10)
        self._secrets: dict[str, str] = {}
        self.server = self._start(
            "server", server_env, "server", "--port", self.url.rsplit(":", 1)[1],
            "--data-dir", str(self.data),
        )  # fmt: skip
        wait_for("the controller's health", lambda: healthy(self.url), self.procs)

    def _start(self, name: str, extra_env: dict[str, str], *args: str) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [PCIFLEET, *args],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=clean_env() | extra_env,
            )
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    def agent(self, profile: str, *extra: str, run: int = 1) -> Proc:
        """Start (or restart: a new ``run`` number, a new log) the agent of ``profile``'s host."""
        host = load_shipped(profile).hostname
        root = self.scratch / "hosts" / host
        if not root.exists():
            build_tree(load_shipped(profile), root)
        if host not in self._secrets:
            self._secrets[host] = self.client.create_token("agent", host=host).token
        secret = self._secrets[host]
        return self._start(
            f"{host}.{run}", {}, "agent",
            "--controller", self.url, "--token", secret, "--host-name", host,
            "--sysfs-root", str(root), "--spec", str(self.spec), "--interval", INTERVAL,
            "--log-level", "debug", *extra,
        )  # fmt: skip

    def hosts(self) -> dict[str, HostSummaryOut]:
        return {h.name: h for h in self.client.list_hosts()}

    def wait_host(self, host: str, state: str) -> None:
        def reached() -> bool:
            found = self.hosts().get(host)
            return found is not None and found.state == state and found.device_count > 0

        self.wait(f"host {host} {state}", reached)

    def wait(self, what: str, probe: Callable[[], bool]) -> None:
        """``wait_for`` with the tails of the logs in the failure message."""
        try:
            wait_for(what, probe, self.live())
        except AssertionError as exc:
            tails = "\n".join(f"--- {p.name}\n{p.text()[-3000:]}" for p in self.procs)
            raise AssertionError(f"{exc}\n{tails}") from None

    def live(self) -> list[Proc]:
        """The processes that should be running (killed ones are left out by their owner)."""
        return [p for p in self.procs if p.process.returncode is None]

    def flavor(self, name: str, alias: str | None = None) -> None:
        specs = {} if alias is None else {"pci_passthrough:alias": alias}
        self.client.create_flavor(
            FlavorCreate(name=name, vcpus=1, memory_mb=512, extra_specs=specs)
        )

    def close(self) -> None:
        self.client.close()
        for proc in self.procs:
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGCONT)
        stop_all(self.procs)


def _domains(path: Path) -> list[dict[str, Any]]:
    domains: list[dict[str, Any]] = json.loads(path.read_text())["domains"]
    return domains


def _vf_rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = json.loads(path.read_text())["pfs"]
    return rows


def _beats(proc: Proc, at_least: int) -> bool:
    """The agent sent ``at_least`` heartbeats: each follows a finished cycle (reconcile)."""
    return proc.text().count("DEBUG pcifleet.agent: heartbeat") >= at_least


def test_a_killed_agent_restarts_reconciles_and_later_restores_the_vf(scratch: Path) -> None:
    fleet = Fleet(scratch)
    host = load_shipped(NFV_PROFILE).hostname
    hypervisor, vfs = scratch / "hypervisor.json", scratch / "vfs.json"
    fakes = (
        "--hypervisor-uri", f"fake://{hypervisor}", "--vf-configurator", f"fake://{vfs}",
        "--physical-device-mappings", "physnet1:ens1f0",
    )  # fmt: skip
    try:
        first = fleet.agent(NFV_PROFILE, *fakes)
        fleet.wait_host(host, "up")
        before = _vf_rows(vfs)
        cli("networks", "create", "n1", "--segment", "vlan:physnet1", *fleet.auth)
        fleet.flavor("small")
        vm = cli_json("boot", "vm-1", "--flavor", "small", "--nic", "net=n1,vnic-type=direct",
                      *fleet.auth)  # fmt: skip
        assert (vm["state"], vm["host"]) == ("active", host)
        fleet.wait("the plug", lambda: f"plugged instance {vm['id']}" in first.text())
        (domain,) = _domains(hypervisor)
        assert domain["name"] == f"pcifleet-{vm['id']}" and domain["running"]
        (port,) = fleet.client.list_ports(instance=vm["id"])
        pf, vf = _configured_vf(_vf_rows(vfs), port.mac_address)
        assert pf == "ens1f0"

        first.process.kill()
        assert first.process.wait(timeout=10) == -signal.SIGKILL
        rows = _vf_rows(vfs)
        rows[pf][vf]["mac"] = GUEST_MAC  # the guest changes its MAC while the agent is down
        vfs.write_text(json.dumps({"pfs": rows}))
        shown = fleet.client.show_instance(vm["id"])

        second = fleet.agent(NFV_PROFILE, *fakes, run=2)
        fleet.wait("two cycles of the restarted agent", lambda: _beats(second, 2))
        assert "plugged instance" not in second.text(), second.text()
        assert f"took up the pre-plug snapshot of VF {pf}/{vf}" in second.text()
        assert _domains(hypervisor) == [domain]
        assert fleet.client.show_instance(vm["id"]) == shown
        assert _vf_rows(vfs)[pf][vf]["mac"] == GUEST_MAC

        cli("delete", vm["id"], *fleet.auth)
        fleet.wait("the unplug", lambda: f"unplugged instance {vm['id']}" in second.text())
        assert _domains(hypervisor) == []
        assert _vf_rows(vfs) == before
    finally:
        fleet.close()


def _configured_vf(rows: dict[str, list[dict[str, Any]]], mac: str) -> tuple[str, int]:
    (found,) = [(pf, r["index"]) for pf, table in rows.items() for r in table if r["mac"] == mac]
    return found


def test_a_host_whose_heartbeats_stop_is_marked_down_and_gets_no_guests(scratch: Path) -> None:
    fleet = Fleet(scratch, PCIFLEET_HEARTBEAT_TIMEOUT="2")
    gpu_host = load_shipped(GPU_PROFILE).hostname
    nfv_host = load_shipped(NFV_PROFILE).hostname
    try:
        gpu = fleet.agent(GPU_PROFILE, "--hypervisor-uri", "fake://", "--vf-configurator", "fake")
        fleet.agent(NFV_PROFILE, "--hypervisor-uri", "fake://", "--vf-configurator", "fake")
        fleet.wait_host(gpu_host, "up")
        fleet.wait_host(nfv_host, "up")
        cli("groups", "create", "gpu", "--match", "10de:*", "--device-type", "type-PCI",
            *fleet.auth)  # fmt: skip
        fleet.flavor("gpu.small", "gpu:1")
        fleet.flavor("small")

        os.kill(gpu.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        fleet.wait_host(gpu_host, "down")
        assert time.monotonic() - started < 10
        listed = {h["name"]: h["state"] for h in cli_json("hosts", "list", *fleet.auth)}
        assert listed == {gpu_host: "down", nfv_host: "up"}
        refused = cli("boot", "train-1", "--flavor", "gpu.small", *fleet.auth, check=False)
        assert refused.returncode != 0
        reason = refused.stdout + refused.stderr
        assert gpu_host in reason and "down" in reason, reason
        vnf = cli_json("boot", "vnf-1", "--flavor", "small", *fleet.auth)
        assert (vnf["state"], vnf["host"]) == ("active", nfv_host)

        os.kill(gpu.process.pid, signal.SIGCONT)
        fleet.wait_host(gpu_host, "up")
        train = cli_json("boot", "train-2", "--flavor", "gpu.small", *fleet.auth)
        assert (train["state"], train["host"]) == ("active", gpu_host)
    finally:
        fleet.close()
