"""``pcifleet instance xml`` against an embedded controller; the XML passes virt-xml-validate."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cli_kit import Cli
from lxml import etree
from typer.testing import CliRunner

from pcifleet.cli.connect import ClientFactory
from pcifleet.cli.main import app
from pcifleet.client import AsgiApp
from pcifleet.control.api.app import create_app
from pcifleet.control.container import build_services
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.principal import LOCAL_ADMIN, Role
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


# --- ports: rendered from the desired state, as the agent defines them -------------------------

PF = PciAddress.parse("0000:3b:00.0")
PF2 = PciAddress.parse("0000:5e:00.0")
VFS = {str(PF.offset(16 + i)): f"ens1f0v{i}" for i in range(2)}


@pytest.fixture
def nics(run: Cli) -> Cli:
    """h1: a PF (ens1f0) with two VFs that have netdevs, and a second PF (ens2f0) with no
    VFs, all on physnet1; a VLAN network on physnet1 shared with every project."""
    tags = Tags({"physical_network": "physnet1"})
    pf = Device(PF, "8086", "1572", DeviceType.PF, "020000", 0, netdevs=("ens1f0",), tags=tags)
    vfs = [
        Device(
            PciAddress.parse(a),
            "8086",
            "154c",
            DeviceType.VF,
            "020000",
            0,
            PF,
            i,
            netdevs=(netdev,),
            tags=tags,
        )
        for i, (a, netdev) in enumerate(VFS.items())
    ]
    pf2 = Device(PF2, "8086", "1572", DeviceType.PF, "020000", 0, netdevs=("ens2f0",), tags=tags)
    cell = NumaCell(0, 0, frozenset(range(8)), 16384)
    run.services.inventory.register_host("h1")
    run.services.inventory.report("h1", 0, InventoryReport([pf, *vfs, pf2], [cell]))
    run.services.flavors.create(LOCAL_ADMIN, parse_flavor("small", 1, 512, {}))
    ok(run, "networks", "create", "n1", "--segment", "vlan:physnet1:213", "--shared")
    return run


def ok(run: Cli, *args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def boot_with(run: Cli, *vnic_types: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """Boot a guest with one port per vnic type on n1; its id and ports by vnic type."""
    args = [a for v in vnic_types for a in ("--nic", f"net=n1,vnic-type={v}")]
    ok(run, "boot", "vm1", "--flavor", "small", *args)
    vm_id: str = json.loads(ok(run, "list", "--json"))[0]["id"]
    ports = json.loads(ok(run, "ports", "list", "--instance", vm_id, "--json"))
    return vm_id, {p["vnic_type"]: p for p in ports}


def only(root: etree._Element, path: str) -> etree._Element:
    found = root.findall(path)
    assert len(found) == 1, etree.tostring(root, encoding="unicode")
    return found[0]


def test_direct_and_macvtap_ports_carry_mac_and_vlan(nics: Cli, tmp_path: Path) -> None:
    vm_id, ports = boot_with(nics, "direct", "macvtap")
    direct, macvtap = ports["direct"], ports["macvtap"]
    assert direct["binding"]["vif_details"]["vlan"] in ("213", 213)
    out = ok(nics, "instance", "xml", vm_id)
    validate(out, tmp_path)
    root = etree.fromstring(out.encode())
    assert root.find("devices/hostdev") is None
    hostdev = only(root, "devices/interface[@type='hostdev']")
    assert hostdev.get("managed") == "yes"
    assert only(hostdev, "mac").get("address") == direct["mac_address"]
    assert only(hostdev, "vlan/tag").get("id") == "213"
    assert hostdev_addresses_of(hostdev) == direct["binding"]["profile"]["pci_slot"]
    tap = only(root, "devices/interface[@type='direct']")
    assert only(tap, "mac").get("address") == macvtap["mac_address"]
    assert only(tap, "vlan/tag").get("id") == "213"
    source = only(tap, "source")
    assert source.get("mode") == "passthrough"
    assert source.get("dev") == VFS[macvtap["binding"]["profile"]["pci_slot"]]
    assert only(tap, "model").get("type") == "virtio"
    # the agent's metadata: the instance, its ports and the two VFs it configures on ens1f0
    meta = only(root, "metadata/{https://pcifleet.dev/xmlns/domain/1}instance")
    assert meta.get("id") == vm_id
    vfs = meta.findall("{https://pcifleet.dev/xmlns/domain/1}vf")
    assert sorted((v.get("port"), v.get("pf")) for v in vfs) == sorted(
        (p["id"], "ens1f0") for p in (direct, macvtap)
    )
    back = libvirt_readback(out)
    assert sorted(m.get("address") for m in back.iterfind("devices/interface/mac")) == sorted(
        p["mac_address"] for p in (direct, macvtap)
    )
    assert [t.get("id") for t in back.iterfind("devices/interface/vlan/tag")] == ["213", "213"]


def libvirt_readback(text: str) -> etree._Element:
    """The domain as libvirt's own parser (``test:///default``) defines and reads it back."""
    libvirt = pytest.importorskip("libvirt")
    if not hasattr(libvirt, "open"):
        pytest.skip("libvirt-python is not installed; scripts/setup.sh installs it")
    conn = libvirt.open("test:///default")
    try:
        domain = conn.defineXML(text)
        try:
            back: str = domain.XMLDesc(0)
        finally:
            domain.undefine()
    finally:
        conn.close()
    return etree.fromstring(back.encode())


def hostdev_addresses_of(element: etree._Element) -> str:
    a = only(element, "source/address")
    text = f"{int(a.get('domain', ''), 0):04x}:{int(a.get('bus', ''), 0):02x}:"
    return text + f"{int(a.get('slot', ''), 0):02x}.{int(a.get('function', ''), 0):x}"


@pytest.mark.parametrize("vnic_type", ["direct", "macvtap"])
def test_a_port_fragment_by_its_vf_address(nics: Cli, tmp_path: Path, vnic_type: str) -> None:
    vm_id, ports = boot_with(nics, "direct", "macvtap")
    port = ports[vnic_type]
    out = ok(nics, "instance", "xml", vm_id, "--device", port["binding"]["profile"]["pci_slot"])
    element = etree.fromstring(out.encode())
    assert element.tag == "interface"
    assert element.get("type") == {"direct": "hostdev", "macvtap": "direct"}[vnic_type]
    assert only(element, "mac").get("address") == port["mac_address"]
    assert only(element, "vlan/tag").get("id") == "213"
    domain = etree.fromstring(ok(nics, "instance", "xml", vm_id).encode())
    devices = only(domain, "devices")
    for old in list(devices):
        devices.remove(old)
    devices.append(element)
    validate(etree.tostring(domain, encoding="unicode"), tmp_path)


def test_a_direct_physical_port_is_a_hostdev_of_the_pf(nics: Cli, tmp_path: Path) -> None:
    vm_id, ports = boot_with(nics, "direct-physical")
    slot = ports["direct-physical"]["binding"]["profile"]["pci_slot"]
    assert slot in (str(PF), str(PF2))
    out = ok(nics, "instance", "xml", vm_id)
    validate(out, tmp_path)
    root = etree.fromstring(out.encode())
    assert root.find("devices/interface") is None
    assert hostdev_addresses(root) == {slot: "yes"}
    fragment = etree.fromstring(ok(nics, "instance", "xml", vm_id, "--device", slot).encode())
    assert fragment.tag == "hostdev" and hostdev_addresses(fragment) == {slot: "yes"}


def test_a_member_token_may_not_read_the_hosts_desired_state(nics: Cli) -> None:
    member = nics.services.tokens.create(Role.MEMBER, project="p1")[1]
    factory = ClientFactory.in_process(create_app(nics.services), member)
    as_member = Cli(nics.runner, factory, nics.services)
    vm_id, _ = boot_with(as_member, "direct")
    result = as_member("instance", "xml", vm_id)
    assert result.exit_code != 0
    assert "desired state of host 'h1' is not allowed to this member token" in result.output
    assert ok(nics, "instance", "xml", vm_id).startswith("<domain")
