"""``pcifleet instance xml`` against an embedded controller; the XML passes virt-xml-validate."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from lxml import etree
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
from pcifleet.domain.tags import Tags

runner = CliRunner()
GPU = "0000:d8:00.0"
QAT = "0000:3b:00.1"
FLAVORS = {
    # name: (vcpus, memory MB, extra specs)
    "plain": (2, 1024, {"pci_passthrough:alias": "gpu:1"}),
    "pinned": (2, 2048, {"pci_passthrough:alias": "gpu:1,qat:1", "hw:cpu_policy": "dedicated"}),
}


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[ClientFactory]:
    """One host with a managed GPU and an unmanaged QAT function on NUMA cell 0."""
    services = build_services(settings_from_env({}, data_dir=tmp_path), migrate_schema=True)
    try:
        services.inventory.register_host("h1")
        gpu = Device(PciAddress.parse(GPU), "10de", "2330", DeviceType.PCI, "030200", 0)
        qat = Device(
            PciAddress.parse(QAT),
            "8086",
            "4941",
            DeviceType.PCI,
            "0b4000",
            0,
            tags=Tags({"managed": "false"}),
        )
        cell = NumaCell(0, 0, frozenset(range(8)), 16384)
        services.inventory.report("h1", 0, InventoryReport([gpu, qat], [cell]))
        for name, vendor, product in (("gpu", "10de", "2330"), ("qat", "8086", "4941")):
            match = {"vendor_id": vendor, "product_id": product}
            services.groups.create(
                LOCAL_ADMIN, DeviceGroup.from_dict({"name": name, "match": [match]})
            )
        for name, (vcpus, memory, extra) in FLAVORS.items():
            services.flavors.create(LOCAL_ADMIN, parse_flavor(name, vcpus, memory, extra))
        asgi = cast(AsgiApp, create_app(services, auth_mode="single-user"))
        yield ClientFactory.in_process(asgi)
    finally:
        services.close()


def cli(factory: ClientFactory, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), obj=factory, env={"COLUMNS": "200"})
    return result.exit_code, result.output


def boot(factory: ClientFactory, flavor: str) -> str:
    code, out = cli(factory, "boot", "vm1", "--flavor", flavor, "--json")
    assert code == 0, out
    vm_id: str = json.loads(out)["id"]
    return vm_id


def validate(text: str, tmp_path: Path, kind: str = "domain") -> None:
    binary = shutil.which("virt-xml-validate")
    if binary is None or shutil.which("xmllint") is None:
        pytest.skip(
            "virt-xml-validate or xmllint is not installed (libvirt-clients, libxml2-utils)"
        )
    path = tmp_path / "out.xml"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run([binary, str(path), kind], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"virt-xml-validate refused:\n{result.stderr}\n{text}"


def hostdev_addresses(root: etree._Element) -> dict[str, str]:
    """PCI address of every hostdev -> its managed attribute."""
    found = {}
    for hostdev in root.iter("hostdev"):
        a = hostdev.find("source/address")
        assert a is not None
        address = f"{int(a.get('domain'), 0):04x}:{int(a.get('bus'), 0):02x}:"
        address += f"{int(a.get('slot'), 0):02x}.{int(a.get('function'), 0):x}"
        found[address] = hostdev.get("managed", "")
    return found


def test_the_domain_of_a_floating_instance(factory: ClientFactory, tmp_path: Path) -> None:
    vm_id = boot(factory, "plain")
    code, out = cli(factory, "instance", "xml", vm_id)
    assert code == 0, out
    validate(out, tmp_path)
    root = etree.fromstring(out.encode())
    assert root.findtext("name") == f"pcifleet-{vm_id}" and root.findtext("uuid") == vm_id
    assert root.findtext("vcpu") == "2" and root.findtext("memory") == str(1024 * 1024)
    assert root.find("numatune") is None
    assert hostdev_addresses(root) == {GPU: "yes"}


def test_the_domain_of_a_pinned_instance(factory: ClientFactory, tmp_path: Path) -> None:
    vm_id = boot(factory, "pinned")
    code, out = cli(factory, "instance", "xml", vm_id)
    assert code == 0, out
    validate(out, tmp_path)
    root = etree.fromstring(out.encode())
    assert hostdev_addresses(root) == {GPU: "yes", QAT: "no"}
    assert [m.get("nodeset") for m in root.iterfind("numatune/memnode")] == ["0"]
    pins = [int(p.get("cpuset", "")) for p in root.iterfind("cputune/vcpupin")]
    assert len(pins) == 2 and set(pins) <= set(range(8))


def test_one_device_fragment(factory: ClientFactory, tmp_path: Path) -> None:
    vm_id = boot(factory, "pinned")
    code, out = cli(factory, "instance", "xml", vm_id, "--device", QAT.upper())
    assert code == 0, out
    element = etree.fromstring(out.encode())
    assert element.tag == "hostdev" and hostdev_addresses(element) == {QAT: "no"}
    domain = etree.fromstring(cli(factory, "instance", "xml", vm_id)[1].encode())
    devices = domain.find("devices")
    assert devices is not None
    for old in list(devices):
        devices.remove(old)
    devices.append(element)
    validate(etree.tostring(domain, encoding="unicode"), tmp_path)


ERRORS = [
    ("unknown-instance", ("nope",), 5, "not found"),
    ("unknown-device", ("{vm}", "--device", "0000:00:01.0"), 5, "has no device 0000:00:01.0"),
    ("malformed-device", ("{vm}", "--device", "zz"), 2, "zz"),
]


@pytest.mark.parametrize(
    ("args", "code", "text"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors(factory: ClientFactory, args: tuple[str, ...], code: int, text: str) -> None:
    vm_id = boot(factory, "plain")
    got, out = cli(factory, "instance", "xml", *(a.format(vm=vm_id) for a in args))
    assert got == code, out
    assert "error:" in out and text in out


def test_an_instance_without_a_placement_is_refused(factory: ClientFactory) -> None:
    boot(factory, "plain")
    code, out = cli(factory, "boot", "vm2", "--flavor", "plain", "--json")
    assert code == 1
    vm_id = json.loads(out)["id"]
    got, out = cli(factory, "instance", "xml", vm_id)
    assert got != 0 and "has no placement" in out
