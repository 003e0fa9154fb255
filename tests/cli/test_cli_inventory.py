"""``pcifleet hosts ...`` and ``pcifleet devices ...`` against an in-process controller."""

from __future__ import annotations

import json

import pytest
from cli_kit import Cli

from pcifleet.control.services.inventory import InventoryReport
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.numa import HugePages, NumaCell
from pcifleet.domain.tags import Tags

PF = "0000:3b:00.0"
VF = "0000:3b:02.0"


@pytest.fixture
def host(run: Cli) -> None:
    pf = Device(PciAddress.parse(PF), "8086", "1572", DeviceType.PF, numa_node=0)
    vf = Device(
        PciAddress.parse(VF), "8086", "154c", DeviceType.VF, numa_node=0,
        parent=pf.address, vf_index=0, tags=Tags({"physical_network": "physnet1"}),
    )  # fmt: skip
    cell = NumaCell(0, 0, frozenset({0, 1, 2, 5}), 8192, (HugePages(1048576, 4, 4),))
    run.services.inventory.register_host("h1")
    run.services.inventory.report("h1", 0, InventoryReport([pf, vf], [cell]))


def test_hosts_list_table_and_json(run: Cli, host: None) -> None:
    table = run("hosts", "list")
    assert table.exit_code == 0, table.output
    assert "h1" in table.stdout and "up" in table.stdout
    (listed,) = json.loads(run("hosts", "list", "--json").stdout)
    assert (listed["name"], listed["device_count"], listed["devices_by_state"]) == (
        "h1",
        2,
        {"available": 2},
    )


def test_hosts_show_prints_cells_pools_and_devices(run: Cli, host: None) -> None:
    shown = run("hosts", "show", "h1")
    assert shown.exit_code == 0, shown.output
    for text in ("NUMA cells", "0-2,5", "4x1048576kB (4 free)", "Pools", "8086:154c", VF):
        assert text in shown.stdout
    brief = run("hosts", "show", "h1", "--no-devices").stdout
    assert "Devices" not in brief
    document = json.loads(run("hosts", "show", "h1", "--json").stdout)
    assert [d["address"] for d in document["devices"]] == [PF, VF]


def test_hosts_disable_and_enable(run: Cli, host: None) -> None:
    disabled = json.loads(run("hosts", "disable", "h1", "--reason", "bios", "--json").stdout)
    assert (disabled["disabled"], disabled["disabled_reason"]) == (True, "bios")
    assert "host h1 enabled" in run("hosts", "enable", "h1").stdout


def test_devices_list_filters_and_reserve(run: Cli, host: None) -> None:
    vfs = json.loads(run("devices", "list", "--type", "type-VF", "--json").stdout)
    assert [d["address"] for d in vfs] == [VF]
    assert json.loads(run("devices", "list", "--physnet", "physnet2", "--json").stdout) == []
    table = run("devices", "list", "--host", "h1").stdout
    assert PF in table and "physnet1" in table
    reserved = run("devices", "reserve", vfs[0]["id"])
    assert "is reserved" in reserved.stdout
    again = run("devices", "reserve", vfs[0]["id"])
    assert again.exit_code == 6 and "pcifleet.device.invalid_transition" in again.stderr
    pf = json.loads(run("devices", "list", "--type", "type-PF", "--json").stdout)[0]
    assert pf["state"] == "unclaimable"
    assert json.loads(run("devices", "unreserve", vfs[0]["id"], "--json").stdout)["state"] == (
        "available"
    )
    shown = run("devices", "show", vfs[0]["id"])
    assert "physical_network=physnet1" in shown.stdout


def test_empty_tables_say_none(run: Cli) -> None:
    assert "(none)" in run("hosts", "list").stdout


def test_unknown_host_exits_5(run: Cli) -> None:
    result = run("hosts", "show", "nowhere")
    assert result.exit_code == 5 and "not found" in result.stderr
