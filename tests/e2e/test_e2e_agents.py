"""End to end over HTTP: a real controller and three agents as separate processes.

``pcifleet server`` listens on 127.0.0.1 (free port, SQLite in a temporary data dir); three
``pcifleet agent`` processes, each on its own fake sysfs tree built from a different shipped
hardware profile, register and report through their agent tokens. Everything after that goes
through the CLI as an operator would type it (``groups``/``flavors create``, ``boot``, ``list``,
``delete`` with ``--json``), and the agents' logs show the desired state they applied. Every
process is stopped with SIGTERM and must exit cleanly; a finally kills whatever is left.
"""

from __future__ import annotations

import signal
from pathlib import Path

from e2e_kit import (
    Proc,
    cli,
    cli_json,
    free_port,
    healthy,
    start,
    stop_all,
    wait_for,
)

from pcifleet.client import PcifleetClient
from pcifleet.sim.profile import load_shipped
from pcifleet.sim.sysfs_builder import build_tree

PROFILES = ("demo-gpu-a100", "demo-nfv-e810-qat", "demo-storage-nvme")
SPECS = (
    '{"exclude": true, "devname": "eno1"}',
    '{"vendor_id": "10de"}',
    '{"vendor_id": "8086", "product_id": "4941"}',
    '{"vendor_id": "144d", "product_id": "a80a"}',
)


def test_controller_and_three_agents_boot_list_delete(scratch: Path) -> None:
    logs = scratch / "logs"
    logs.mkdir()
    data = scratch / "data"
    spec_file = scratch / "device_spec"
    spec_file.write_text("\n".join(SPECS) + "\n", encoding="utf-8")
    hosts = {p: load_shipped(p).hostname for p in PROFILES}
    admin = cli("token", "create", "--role", "admin", "--data-dir", str(data)).stdout.strip()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    auth = ["--url", url, "--token", admin]
    server: list[Proc] = []
    agents: list[Proc] = []
    try:
        server.append(start("server", logs, "server", "--port", str(port), "--data-dir", str(data)))
        wait_for("the controller's health", lambda: healthy(url), server)
        for profile, host in hosts.items():
            root = scratch / "hosts" / host
            build_tree(load_shipped(profile), root)
            secret = cli(
                "token", "create", "--role", "agent", "--host", host, "--data-dir", str(data)
            ).stdout.strip()
            agents.append(
                start(
                    host,
                    logs,
                    "agent",
                    *("--controller", url, "--token", secret, "--host-name", host),
                    *("--sysfs-root", str(root), "--spec", str(spec_file), "--interval", "0.5"),
                    *("--hypervisor-uri", "fake://", "--vf-configurator", "fake"),
                )
            )
        everyone = server + agents

        def hosts_up() -> bool:
            with PcifleetClient(url, admin) as client:
                listed = {h.name: h for h in client.list_hosts()}
            return all(
                h in listed and listed[h].state == "up" and listed[h].device_count > 0
                for h in hosts.values()
            )

        wait_for("3 hosts up with devices", hosts_up, everyone)
        _boot_list_delete(auth, hosts, agents, everyone)
        _refused(url, data, scratch / "hosts" / hosts["demo-gpu-a100"], spec_file)
        codes = stop_all(agents)
        assert codes == {host: 0 for host in hosts.values()}, [a.text() for a in agents]
        for agent in agents:
            assert "stopped" in agent.text()
        # uvicorn shuts down gracefully, then re-raises SIGTERM on itself (exit -15)
        assert stop_all(server)["server"] in (0, -signal.SIGTERM), server[0].text()
        assert "Application shutdown complete" in server[0].text()
    finally:
        stop_all(agents + server)
    assert all(p.process.returncode is not None for p in agents + server)


def _boot_list_delete(
    auth: list[str], hosts: dict[str, str], agents: list[Proc], everyone: list[Proc]
) -> None:
    cli("groups", "create", "gpu", "--match", "10de:*", "--device-type", "type-PCI", *auth)
    cli("groups", "create", "qat", "--match", "8086:4941", "--device-type", "type-VF", *auth)
    for name, alias in (("gpu.small", "gpu:1"), ("qat.pair", "qat:2")):
        cli(
            "flavors", "create", name, "--vcpus", "2", "--memory-mb", "1024",
            "--extra-spec", f"pci_passthrough:alias={alias}", *auth,
        )  # fmt: skip
    gpu_vm = cli_json("boot", "train-1", "--flavor", "gpu.small", *auth)
    qat_vm = cli_json("boot", "vnf-1", "--flavor", "qat.pair", *auth)
    assert (gpu_vm["state"], gpu_vm["host"]) == ("active", hosts["demo-gpu-a100"])
    assert (qat_vm["state"], qat_vm["host"]) == ("active", hosts["demo-nfv-e810-qat"])
    assert len(qat_vm["requests"][0]["devices"]) == 2
    gpu_device = gpu_vm["requests"][0]["devices"][0]
    listed = cli_json("list", *auth)
    assert {(vm["name"], vm["host"]) for vm in listed} == {
        ("train-1", hosts["demo-gpu-a100"]),
        ("vnf-1", hosts["demo-nfv-e810-qat"]),
    }
    gpu_agent = next(a for a in agents if a.name == hosts["demo-gpu-a100"])
    wait_for(
        "the GPU host's agent to plug train-1",
        lambda: f"plugged instance {gpu_vm['id']}" in gpu_agent.text(),
        everyone,
    )
    assert gpu_device in gpu_agent.text()
    assert _device_state(auth, gpu_vm["host"], gpu_device) == "allocated"
    deleted = cli_json("delete", gpu_vm["id"], *auth)
    assert deleted["state"] == "deleted"
    assert _device_state(auth, gpu_vm["host"], gpu_device) == "available"
    wait_for(
        "the GPU host's agent to unplug train-1",
        lambda: f"unplugged instance {gpu_vm['id']}" in gpu_agent.text(),
        everyone,
    )
    remaining = cli_json("list", *auth)
    assert [vm["name"] for vm in remaining] == ["vnf-1"]
    cli("delete", qat_vm["id"], *auth)


def _device_state(auth: list[str], host: str, address: str) -> str:
    shown = cli_json("hosts", "show", host, *auth)
    state: str = next(d["state"] for d in shown["devices"] if d["address"] == address)
    return state


def _refused(url: str, data: Path, root: Path, spec_file: Path) -> None:
    """A rejected token is a configuration error: a clear message and exit code 4."""
    common = ("agent", "--controller", url, "--sysfs-root", str(root), "--spec", str(spec_file))
    wrong = cli(*common, "--token", "not-a-token", "--host-name", "h", "--once", check=False)
    assert wrong.returncode == 4
    assert "controller refused the token" in wrong.stderr
    member = cli("token", "create", "--role", "member", "--project", "p", "--data-dir", str(data))
    not_agent = cli(*common, "--token", member.stdout.strip(), "--host-name", "h", check=False)
    assert not_agent.returncode == 4
