"""``pcifleet boot | list | show | delete | explain`` against an embedded controller."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from typer.testing import CliRunner

from pcifleet.cli.connect import ClientFactory
from pcifleet.cli.main import app
from pcifleet.client import AsgiApp
from pcifleet.control.api.app import create_app
from pcifleet.control.container import build_services
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.control.settings import settings_from_env
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.group import DeviceGroup
from pcifleet.domain.numa import NumaCell

runner = CliRunner()
GPU = "0000:d8:00.0"


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[ClientFactory]:
    """An in-process controller with one host (one GPU), a ``gpu`` group and a flavor."""
    services = build_services(settings_from_env({}, data_dir=tmp_path), migrate_schema=True)
    try:
        services.inventory.register_host("h1")
        gpu = Device(PciAddress.parse(GPU), "10de", "2330", DeviceType.PCI, "030200", 0)
        cell = NumaCell(0, 0, frozenset(range(8)), 16384)
        services.inventory.report("h1", 0, InventoryReport([gpu], [cell]))
        match = {"vendor_id": "10de", "product_id": "2330"}
        services.groups.create(
            LOCAL_ADMIN, DeviceGroup.from_dict({"name": "gpu", "match": [match]})
        )
        services.flavors.create(
            LOCAL_ADMIN, parse_flavor("gpu", 2, 1024, {"pci_passthrough:alias": "gpu:1"})
        )
        asgi = cast(AsgiApp, create_app(services, auth_mode="single-user"))
        yield ClientFactory.in_process(asgi)
    finally:
        services.close()


def cli(factory: ClientFactory, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), obj=factory, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_boot_list_show_delete(factory: ClientFactory) -> None:
    code, out = cli(factory, "boot", "vm1", "--flavor", "gpu", "--json")
    assert code == 0, out
    vm = json.loads(out)
    assert vm["state"] == "active" and vm["host"] == "h1"
    assert vm["requests"][0]["devices"] == [GPU]
    code, out = cli(factory, "list")
    assert code == 0 and "vm1" in out and "active" in out and GPU in out
    code, out = cli(factory, "show", vm["id"])
    assert code == 0 and "host h1" in out and GPU in out
    code, out = cli(factory, "delete", vm["id"])
    assert code == 0 and "1 device(s) freed" in out
    code, out = cli(factory, "list", "--json")
    assert code == 0 and json.loads(out) == []


def test_a_boot_that_cannot_be_placed_shows_the_reason_and_exits_1(factory: ClientFactory) -> None:
    assert cli(factory, "boot", "vm1", "--flavor", "gpu")[0] == 0
    code, out = cli(factory, "boot", "vm2", "--flavor", "gpu")
    assert code == 1
    assert "No valid host was found" in out
    assert "had fewer than 1 free devices of group gpu" in out


def test_explain_shows_the_choice_without_claiming(factory: ClientFactory) -> None:
    code, out = cli(factory, "explain", "--flavor", "gpu")
    assert code == 0 and "would place on h1" in out
    code, out = cli(factory, "explain", "--flavor", "gpu", "--json")
    assert json.loads(out)["chosen"]["host"] == "h1"
    assert json.loads(cli(factory, "list", "--json")[1]) == []


def test_errors_are_one_line_with_the_exit_code_of_their_kind(factory: ClientFactory) -> None:
    code, out = cli(factory, "show", "nope")
    assert code == 5  # not found
    assert "error:" in out and "not found" in out
