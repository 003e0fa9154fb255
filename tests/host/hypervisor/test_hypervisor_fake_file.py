"""The file-backed fake hypervisor: domains outlive the object (an agent process) that made them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypervisor_kit import GPU, VF, domain_xml, hostdev, vf_port

from pcifleet.domain.errors import InvalidInput
from pcifleet.host.hypervisor import DomainState, FakeHypervisor, Operation
from pcifleet.host.hypervisor.fake_file import (
    FileBackedFakeHypervisor,
    fake_hypervisor,
    fake_state_path,
)
from pcifleet.host.libvirt import GuestDevice


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("fake://", None),
        ("fake:///", None),
        ("fake:///var/lib/pcifleet/fake.json", Path("/var/lib/pcifleet/fake.json")),
    ],
)
def test_a_fake_uri_names_a_state_file_or_none(uri: str, path: Path | None) -> None:
    assert fake_state_path(uri) == path


@pytest.mark.parametrize(
    ("uri", "rule"), [("qemu:///system", "scheme"), ("fake://host/state.json", "path")]
)
def test_a_bad_fake_uri_is_refused_with_the_rule(uri: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        fake_state_path(uri)
    assert caught.value.fields["rule"] == rule


def test_fake_uris_without_a_path_stay_in_memory(tmp_path: Path) -> None:
    assert type(fake_hypervisor("fake://")) is FakeHypervisor
    backed = fake_hypervisor(f"fake://{tmp_path}/h.json")
    assert isinstance(backed, FileBackedFakeHypervisor) and backed.path == tmp_path / "h.json"


def test_domains_and_their_live_devices_survive_a_restart_fake_file(tmp_path: Path) -> None:
    path = tmp_path / "hypervisor.json"
    first = FileBackedFakeHypervisor(path)
    first.define(domain_xml("vm-a", devices=(GuestDevice(GPU),)))
    first.start("vm-a")
    first.attach_device("vm-a", vf_port(), config=False)
    first.define(domain_xml("vm-b"))
    again = FileBackedFakeHypervisor(path)
    assert again.list_domains() == first.list_domains()
    assert again.state("vm-a") is DomainState.RUNNING
    assert again.xml("vm-a") == first.xml("vm-a")
    assert again.devices("vm-a") == first.devices("vm-a")
    assert again.devices("vm-a", live=False) == first.devices("vm-a", live=False)
    assert ("pci", str(VF)) in {k for d in again.devices("vm-a") for k in d.keys}
    again.detach_device("vm-a", vf_port(), config=False)
    again.stop("vm-a")
    again.undefine("vm-a")
    assert [d.name for d in FileBackedFakeHypervisor(path).list_domains()] == ["vm-b"]


def test_a_failed_call_leaves_the_file_as_the_state_is_fake_file(tmp_path: Path) -> None:
    path = tmp_path / "hypervisor.json"
    fake = FileBackedFakeHypervisor(path)
    fake.define(domain_xml("vm-a"))
    fake.fail(Operation.START)
    with pytest.raises(Exception, match="injected failure"):
        fake.start("vm-a")
    assert FileBackedFakeHypervisor(path).state("vm-a") is DomainState.SHUT_OFF
    assert hostdev() not in path.read_text()


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("not json", "path"),
        ("[]", "path"),
        ('{"domains": {}}', "domains"),
        ('{"domains": [1]}', "domains"),
        ('{"domains": [{"name": "x"}]}', "domains"),
    ],
)
def test_a_malformed_state_file_is_refused_naming_the_field(
    tmp_path: Path, content: str, field: str
) -> None:
    path = tmp_path / "hypervisor.json"
    path.write_text(content)
    with pytest.raises(InvalidInput) as caught:
        FileBackedFakeHypervisor(path)
    assert caught.value.fields["field"] == field
    assert str(path) in str(caught.value)


def test_the_state_file_is_plain_json_a_test_can_read(tmp_path: Path) -> None:
    path = tmp_path / "hypervisor.json"
    FileBackedFakeHypervisor(path).define(domain_xml("vm-a"))
    (domain,) = json.loads(path.read_text())["domains"]
    assert (domain["name"], domain["running"], domain["persistent"]) == ("vm-a", False, True)
