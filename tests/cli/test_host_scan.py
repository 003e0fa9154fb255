"""``pcifleet host scan`` through Typer's CliRunner: on a real-kernel capture and on this
machine's own /sys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pcifleet.cli.main import app
from pcifleet.host.pciids import system_pci_ids

REQUIRED = {
    "address",
    "vendor_id",
    "device_id",
    "class",
    "numa_node",
    "driver",
    "role",
    "pf",
    "vf_index",
    "sriov_totalvfs",
    "sriov_numvfs",
    "netdevs",
}

runner = CliRunner()


@pytest.fixture
def capture(sriov_capture: Path) -> Path:
    return sriov_capture


def run_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["host", "scan", "--json", *args])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def entries(document: dict[str, object]) -> dict[str, dict[str, object]]:
    functions = document["functions"]
    assert isinstance(functions, list)
    return {entry["address"]: entry for entry in functions}


def test_table_on_capture(capture: Path) -> None:
    result = runner.invoke(
        app, ["host", "scan", "--sysfs-root", str(capture)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "26 PCI functions" in out and "2 PFs, 12 VFs" in out
    assert "PF 8/8" in out and "PF 4/4" in out
    assert "└ 0000:41:01.0" in out and "VF 7" in out
    assert "vfio-pci (override vfio-pci)" in out
    assert "eth1 up" in out and "eth0 up" in out
    assert "NUMA node 1" in out
    # VFs are listed right under their PF
    assert out.index("0000:41:00.0") < out.index("└ 0000:41:00.1") < out.index("0000:42:00.0")


def test_json_on_capture(capture: Path) -> None:
    found = entries(run_json("--sysfs-root", str(capture / "sys")))
    assert len(found) == 26
    assert all(entry.keys() >= REQUIRED for entry in found.values())
    assert all("assignable" not in entry for entry in found.values())
    vf = found["0000:41:01.0"]
    assert (vf["role"], vf["pf"], vf["vf_index"]) == ("VF", "0000:41:00.0", 7)
    assert (vf["driver"], vf["numa_node"], vf["class"]) == (None, 1, "010802")
    pf = found["0000:41:00.0"]
    assert (pf["role"], pf["sriov_totalvfs"], pf["sriov_numvfs"]) == ("PF", 8, 8)
    assert pf["pf"] is None and pf["vf_index"] is None
    assert found["0000:00:1f.2"]["numa_node"] is None
    assert found["0000:00:1f.2"]["role"] == "PCI"
    assert found["0000:00:1f.2"]["sriov_totalvfs"] is None
    assert found["0000:42:00.0"]["netdevs"] == ["eth1"]
    assert found["0000:21:00.3"]["driver"] == "vfio-pci"
    if system_pci_ids().available:  # Debian hwdata installed: human names
        assert found["0000:41:00.0"]["device_name"] == "QEMU NVM Express Controller"
        assert found["0000:22:00.0"]["vendor_name"] == "Intel Corporation"


SPEC_LINES = """\
# NVMe VFs on node 1 get a tier; the virtio NIC is on physnet1
{"vendor_id": "1b36", "product_id": "0010", "address": "0000:41:00.*", "tier": "fast"}
{"address": "0000:42:00.0", "physical_network": "physnet1"}
"""


@pytest.mark.parametrize("form", ["lines", "list"])
def test_json_with_specs(capture: Path, tmp_path: Path, form: str) -> None:
    spec = tmp_path / "specs"
    if form == "lines":
        spec.write_text(SPEC_LINES)
    else:
        values = [json.loads(line) for line in SPEC_LINES.splitlines()[1:]]
        spec.write_text(json.dumps(values))
    found = entries(run_json("--sysfs-root", str(capture), "--spec", str(spec)))
    nic = found["0000:42:00.0"]
    assert (nic["assignable"], nic["tags"]) == (True, {"physical_network": "physnet1"})
    vf = found["0000:41:00.5"]
    assert (vf["assignable"], vf["tags"]) == (True, {"tier": "fast"})
    other = found["0000:21:00.1"]
    assert other["assignable"] is False and other["tags"] == {}
    assert len(other["reasons"]) == 2  # type: ignore[arg-type]
    assert "spec 0:" in other["reasons"][0]  # type: ignore[index]


def test_table_with_specs_shows_why(capture: Path, tmp_path: Path) -> None:
    spec = tmp_path / "specs"
    spec.write_text(SPEC_LINES)
    result = runner.invoke(
        app,
        ["host", "scan", "--sysfs-root", str(capture), "--spec", str(spec)],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "yes spec 1 physical_network=physnet1" in result.stdout
    assert "no spec 0:" in result.stdout
    assert "functions assignable under 2 specs" in result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"vendor_id": "1b36"}\n{"vendor_id": \n', "line 2"),
        ('{"product_id": "xyz1"}\n', "product_id"),
        ("5\n", "expected a JSON list or object"),
    ],
)
def test_bad_spec_file_exits_2(capture: Path, tmp_path: Path, content: str, message: str) -> None:
    spec = tmp_path / "specs"
    spec.write_text(content)
    result = runner.invoke(app, ["host", "scan", "--sysfs-root", str(capture), "--spec", str(spec)])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_root_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["host", "scan", "--sysfs-root", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "not a directory" in result.output


def test_real_sys_table_and_json() -> None:
    table = runner.invoke(app, ["host", "scan"])
    assert table.exit_code == 0, table.output
    assert "PCI functions under /" in table.stdout
    document = run_json()
    functions = document["functions"]
    assert isinstance(functions, list)
    bus = Path("/sys/bus/pci/devices")
    if bus.is_dir():
        assert {f["address"] for f in functions} <= {p.name for p in bus.iterdir()}
        assert len(functions) + len(document["warnings"]) >= len(list(bus.iterdir()))  # type: ignore[arg-type]
    assert all(f.keys() >= REQUIRED for f in functions)
