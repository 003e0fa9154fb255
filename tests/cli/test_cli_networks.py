"""``pcifleet networks|ports ...``, ``boot --nic`` and ``attach|detach`` against an embedded
controller (one host with a PF and two VFs on physnet1)."""

from __future__ import annotations

import json

import pytest
from cli_kit import Cli

from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import Device, DeviceType
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.tags import Tags

PF = PciAddress.parse("0000:3b:00.0")
VFS = (str(PF.offset(16)), str(PF.offset(17)))


@pytest.fixture
def cli(run: Cli) -> Cli:
    services = run.services
    tags = Tags({"physical_network": "physnet1"})
    pf = Device(PF, "8086", "1572", DeviceType.PF, "020000", 0, tags=tags)
    vfs = [
        Device(PciAddress.parse(a), "8086", "154c", DeviceType.VF, "020000", 0, PF, i, tags=tags)
        for i, a in enumerate(VFS)
    ]
    services.inventory.register_host("h1")
    cell = NumaCell(0, 0, frozenset(range(8)), 16384)
    services.inventory.report("h1", 0, InventoryReport([pf, *vfs], [cell]))
    services.flavors.create(LOCAL_ADMIN, parse_flavor("small", 1, 512, {}))
    return run


def ok(cli: Cli, *args: str) -> str:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result.output


def test_networks_create_list_show_delete(cli: Cli) -> None:
    created = json.loads(
        ok(
            cli,
            "networks",
            "create",
            "n1",
            "--segment",
            "vxlan",
            "--segment",
            "vlan:physnet1",
            "--shared",
            "--json",
        )
    )
    assert [(s["network_type"], s["segmentation_id"]) for s in created["segments"]] == [
        ("vxlan", 1),
        ("vlan", 1000),
    ]
    assert created["shared"] is True
    out = ok(
        cli,
        "networks",
        "create",
        "n2",
        "--segment",
        "vlan:physnet2:2042",
        "--segment",
        "flat:physnet3",
    )
    assert "vlan:physnet2:2042" in out and "flat:physnet3" in out
    listed = ok(cli, "networks", "list")
    assert "n1" in listed and "vxlan:1, vlan:physnet1:1000" in listed
    assert "n2" in ok(cli, "networks", "show", "n2")
    ok(cli, "networks", "delete", "n2")
    assert [n["name"] for n in json.loads(ok(cli, "networks", "list", "--json"))] == ["n1"]


@pytest.mark.parametrize(
    ("segment", "words"),
    [
        ("ethernet:x", "the type is one of flat, vlan, vxlan"),
        ("vlan", "expected vlan:PHYSNET[:VID]"),
        ("vlan:physnet1:abc", "'abc' is not an integer id"),
        ("vxlan:1:2", "vxlan takes at most a VNI"),
        ("flat", "expected flat:PHYSNET"),
    ],
)
def test_bad_segments_name_the_option_and_the_rule(cli: Cli, segment: str, words: str) -> None:
    result = cli("networks", "create", "bad", "--segment", segment)
    assert result.exit_code == 2
    assert "--segment" in result.output and words in result.output


def test_ports_show_vf_settings_qos_notes_and_refusals(cli: Cli) -> None:
    ok(cli, "networks", "create", "n1", "--segment", "vlan:physnet1")
    port = json.loads(
        ok(
            cli,
            "ports",
            "create",
            "--network",
            "n1",
            "--vnic-type",
            "direct",
            "--untrusted",
            "--no-port-security",
            "--propagate-uplink-status",
            "--qos-max-kbps",
            "1500",
            "--qos-min-kbps",
            "1000",
            "--mac",
            "02:00:00:00:00:01",
            "--json",
        )
    )
    assert port["vf"] == {
        "spoofchk": False,
        "link_state": "auto",
        "max_tx_rate_mbps": 2,
        "min_tx_rate_mbps": 1,
    }
    assert port["trusted"] is False and port["mac_address"] == "02:00:00:00:00:01"
    assert "1500 kbit/s is enforced as 2 Mbit/s" in port["notes"][0]
    shown = ok(cli, "ports", "show", port["id"])
    assert "1500 kbit/s is enforced as 2 Mbit/s" in shown and "spoofchk=no" in shown
    listed = ok(cli, "ports", "list", "--network", "n1")
    assert port["id"] in listed and "max 2 / min 1 Mbit/s" in listed and "unbound" in listed
    down = json.loads(
        ok(
            cli,
            "ports",
            "create",
            "--network",
            "n1",
            "--vnic-type",
            "macvtap",
            "--admin-state-down",
            "--json",
        )
    )
    assert down["vf"]["link_state"] == "disable"
    burst = cli(
        "ports",
        "create",
        "--network",
        "n1",
        "--vnic-type",
        "direct",
        "--qos-max-kbps",
        "1000",
        "--qos-burst-kbps",
        "100",
    )
    assert burst.exit_code == 2 and "pcifleet.vf.invalid_rate" in burst.output
    sg = cli(
        "ports", "create", "--network", "n1", "--vnic-type", "direct", "--security-group", "default"
    )
    assert sg.exit_code == 2 and "security groups cannot filter a direct port" in sg.output
    ok(cli, "ports", "delete", port["id"])
    assert cli("ports", "show", port["id"]).exit_code == 5


def test_boot_with_nics_prints_bindings_and_the_mixed_warning(cli: Cli) -> None:
    ok(cli, "networks", "create", "n1", "--segment", "vlan:physnet1")
    out = ok(
        cli,
        "boot",
        "vm1",
        "--flavor",
        "small",
        "--nic",
        "net=n1,vnic-type=direct",
        "--nic",
        "net=n1,vnic-type=macvtap",
    )
    assert "hw_veb" in out and "physnet1" in out and "1000" in out
    assert any(vf in out for vf in VFS)
    assert "warning: " in out and "live migration will unplug the direct ports" in out
    vm = json.loads(ok(cli, "list", "--json"))[0]
    ports = json.loads(ok(cli, "ports", "list", "--instance", vm["id"], "--json"))
    assert sorted(p["binding"]["profile"]["pci_slot"] for p in ports) == sorted(VFS)
    assert sorted(p["binding"]["profile"]["vf_num"] for p in ports) == [0, 1]


@pytest.mark.parametrize(
    ("nic", "words"),
    [
        ("n1", "comma-separated net=NAME"),
        ("net=n1,port=x", "exactly one of net= or port="),
        ("vnic-type=direct", "exactly one of net= or port="),
        ("port=x,vnic-type=direct", "vnic-type= goes with net="),
        ("net=n1,vnic-type=fast", "vnic-type 'fast' is not one of normal, direct"),
        ("net=n1,net=n2", "each once"),
    ],
)
def test_bad_nics_name_the_option_and_the_rule(cli: Cli, nic: str, words: str) -> None:
    result = cli("boot", "vm1", "--flavor", "small", "--nic", nic)
    assert result.exit_code == 2
    assert "--nic" in result.output and words in result.output
    assert json.loads(ok(cli, "list", "--json")) == []


def test_attach_and_detach(cli: Cli) -> None:
    ok(cli, "networks", "create", "n1", "--segment", "vlan:physnet1")
    vm = json.loads(ok(cli, "boot", "vm1", "--flavor", "small", "--json"))
    port = json.loads(
        ok(cli, "ports", "create", "--network", "n1", "--vnic-type", "direct", "--json")
    )
    out = ok(cli, "attach", vm["id"], "--port", port["id"])
    assert f"attached port {port['id']}" in out and "hw_veb" in out
    second = json.loads(ok(cli, "attach", vm["id"], "--nic", "net=n1,vnic-type=direct", "--json"))
    assert second["port"]["binding"]["profile"]["pci_slot"] in VFS
    third = cli("attach", vm["id"], "--nic", "net=n1,vnic-type=direct")
    assert third.exit_code == 6  # conflict: no free VF left on the instance's host
    assert "pcifleet.port.no_device_on_host" in third.output and "physnet1" in third.output
    again = cli("attach", vm["id"], "--port", port["id"])
    assert again.exit_code == 6 and "pcifleet.port.in_use" in again.output
    neither = cli("attach", vm["id"])
    assert neither.exit_code == 2 and "exactly one of --port or --nic" in neither.output
    out = ok(cli, "detach", vm["id"], port["id"])
    assert f"detached port {port['id']}" in out and "unbound" in out
    devices = json.loads(ok(cli, "show", vm["id"], "--json"))["requests"]
    assert [r["requester"] for r in devices] == [second["port"]["id"]]
    assert cli("detach", vm["id"], port["id"]).exit_code == 5
