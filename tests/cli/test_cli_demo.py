"""``pcifleet demo`` through Typer's CliRunner: the Rich view, ``--json``, and a refused
``--data-dir``."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pcifleet.cli.main import app
from pcifleet.sim.demo import DELETE_INSTANCE, DEMO_PROFILES

runner = CliRunner(env={"COLUMNS": "160", "NO_COLOR": "1"})


@pytest.fixture
def fresh() -> Iterator[Path]:
    """A path for a new data directory, on tmpfs when available (thousands of sysfs files)."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix="pcifleet-cli-demo-", dir=base))
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


def test_demo_shows_every_step_and_exits_0(fresh: Path) -> None:
    result = runner.invoke(app, ["demo", "--data-dir", str(fresh)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"data directory: {fresh.resolve()}" in out
    for title in ("Simulating hosts", "Creating device groups", "Booting instances"):
        assert f"✓ {title}" in out
    assert all(name in out for name in ("gpu-a100-01", "nfv-x710-01", "storage-01"))
    assert "✓ Creating networks and ports, booting guests with NICs" in out
    assert "vxlan 1 + vlan 2001 on physnet2" in out
    assert "max_kbps 1500 kbit/s is enforced as 2 Mbit/s" in out
    assert "port bindings" in out and "hostdev_physical" in out
    assert "! edge-fw-1: this instance mixes vnic types" in out
    assert "placements" in out and "train-1" in out
    assert "train-huge (gpu.quad) is in state error: No valid host was found." in out
    assert "used/total per host and NUMA cell" in out
    assert "(a dry run: nothing is claimed)" in out
    assert "✓ Live-migrating guests with SR-IOV ports" in out
    assert "transparent: macvtap: the guest keeps its virtio NIC" in out
    assert "unplug-replug: direct: unplugged from the guest before the move" in out
    assert "→ completed" in out and "now available" in out
    assert f"{DELETE_INSTANCE} on gpu-h100-01 is now deleted; freed:" in out
    assert "2/2 → 0/2" in out
    assert "Traceback" not in out
    assert (fresh / "pcifleet.db").is_file()


def test_demo_json_is_a_machine_readable_summary(fresh: Path) -> None:
    result = runner.invoke(app, ["demo", "--json", "--data-dir", str(fresh)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [h["profile"] for h in document["hosts"]] == list(DEMO_PROFILES)
    assert {p["instance"] for p in document["placements"]} >= {"train-1", DELETE_INSTANCE}
    assert all(p["host"] for p in document["placements"])
    (failure,) = document["failures"]
    assert failure["instance"] == "train-huge"
    assert failure["code"] == "pcifleet.schedule.no_valid_host"
    assert document["explain"]["chosen"]["host"]
    bindings = document["bindings"]
    assert {b["vnic_type"] for b in bindings} == {"direct", "macvtap", "direct-physical"}
    assert all(b["host"] and b["pci_slot"] and b["physical_network"] for b in bindings)
    assert {b["port"] for b in bindings} == {p["id"] for p in document["ports"]}
    assert list(document["mixed_vnic_warnings"]) == ["edge-fw-1"]
    for migration in document["migrations"]:
        assert migration["state"] == "completed"
        assert migration["source_host"] != migration["destination_host"]
        assert set(migration["source_states_after"].values()) == {"available"}
    assert {f["state"] for f in document["delete"]["freed"]} == {"available"}
    cells = document["utilization"]["after_delete"]["cells"]
    assert len(cells) == 2 * len(DEMO_PROFILES)


def test_demo_refuses_a_used_data_dir(fresh: Path) -> None:
    fresh.mkdir()
    (fresh / "pcifleet.db").write_text("")
    result = runner.invoke(app, ["demo", "--data-dir", str(fresh)])
    assert result.exit_code == 2
    assert "must be a new or empty directory" in result.stderr
    assert (fresh / "pcifleet.db").read_text() == ""
