"""``/v1/instances`` over the in-process app: boot, list, show, delete, explain, visibility."""

from __future__ import annotations

import httpx
import pytest
from api_kit import VFS, Fleet, Tokens, auth

from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.instances import PortIn
from pcifleet.control.container import Services
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.principal import LOCAL_ADMIN
from pcifleet.domain.errors import NotFound, QuotaExceeded, UnknownGroup
from pcifleet.domain.group import DeviceGroup


@pytest.fixture
def catalogue(services: Services, fleet: Fleet) -> Fleet:
    vf = {"vendor_id": "8086", "product_id": "154c"}
    services.groups.create(LOCAL_ADMIN, DeviceGroup.from_dict({"name": "vf", "match": [vf]}))
    services.flavors.create(
        LOCAL_ADMIN, parse_flavor("vf", 1, 512, {"pci_passthrough:alias": "vf:1"})
    )
    services.flavors.create(
        LOCAL_ADMIN, parse_flavor("gpu", 1, 512, {"pci_passthrough:alias": "gpu:1"})
    )
    services.flavors.create(
        LOCAL_ADMIN, parse_flavor("private", 1, 512, {"pci_passthrough:alias": "vf-a:1"})
    )
    return fleet


def test_boot_show_list_delete_round_trip(
    clients: dict[str, PcifleetClient], catalogue: Fleet
) -> None:
    alice = clients["alice"]
    vm = alice.boot("vm1", "vf")
    assert vm.state == "active" and vm.host == "h1" and vm.project == "alice"
    assert vm.requests[0].requester == "vf" and vm.requests[0].devices[0] in VFS
    assert vm.cells == []
    assert alice.show_instance(vm.id) == vm
    assert [i.id for i in alice.list_instances()] == [vm.id]
    assert clients["bob"].list_instances() == []
    with pytest.raises(NotFound):
        clients["bob"].show_instance(vm.id)
    gone = alice.delete_instance(vm.id)
    assert gone.state == "deleted" and gone.deleted_at is not None
    assert alice.list_instances() == []
    assert [i.id for i in alice.list_instances(include_deleted=True)] == [vm.id]


def test_a_boot_that_cannot_be_placed_is_an_instance_in_error(
    clients: dict[str, PcifleetClient], catalogue: Fleet
) -> None:
    vm = clients["admin"].boot("vm1", "gpu")
    assert vm.state == "error" and vm.host is None
    assert vm.fault is not None
    assert vm.fault.code == "pcifleet.schedule.no_valid_host"
    assert "1 host: 1 had fewer than 1 free devices of group gpu" in vm.fault.message


def test_port_requests_are_placed_next_to_the_flavor_requests(
    clients: dict[str, PcifleetClient], catalogue: Fleet
) -> None:
    port = PortIn(port_id="p1", vnic_type="direct", physical_network="physnet1")
    vm = clients["admin"].boot("vm1", "vf", ports=[port])
    assert vm.state == "active"
    assert [(r.requester_kind, r.requester) for r in vm.requests] == [
        ("group", "vf"),
        ("port", "p1"),
    ]
    assert sorted(d for r in vm.requests for d in r.devices) == sorted(VFS)


def test_private_groups_and_quotas_are_enforced(
    clients: dict[str, PcifleetClient], services: Services, catalogue: Fleet
) -> None:
    with pytest.raises(UnknownGroup):
        clients["bob"].boot("vm1", "private")
    services.groups.set_quota(LOCAL_ADMIN, "vf", "alice", 1)
    clients["alice"].boot("vm1", "vf")
    with pytest.raises(QuotaExceeded) as info:
        clients["alice"].boot("vm2", "vf")
    assert info.value.fields["code"] == "pcifleet.quota.exceeded"


def test_explain_reports_the_choice_and_claims_nothing(
    clients: dict[str, PcifleetClient], catalogue: Fleet
) -> None:
    admin = clients["admin"]
    explained = admin.explain("vf")
    assert explained.hosts == 1 and explained.passed == 1
    assert explained.chosen is not None and explained.chosen.host == "h1"
    assert explained.chosen.requests[0].devices[0] in VFS
    assert explained.groups[0].passed and explained.groups[0].examples[0].host == "h1"
    assert admin.list_instances() == []
    failed = admin.explain("gpu")
    assert failed.chosen is None
    assert failed.sentence == "1 host: 1 had fewer than 1 free devices of group gpu"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "vm", "flavor": "vf", "extra": 1}, "extra"),
        ({"name": "", "flavor": "vf"}, "name"),
        ({"name": "vm", "flavor": "vf", "ports": [{"port_id": "p", "vnic_type": "x"}]}, "vnic"),
    ],
)
def test_malformed_boots_are_400_naming_the_field(
    http: httpx.Client, tokens: Tokens, catalogue: Fleet, body: dict[str, object], field: str
) -> None:
    response = http.post("/v1/instances", json=body, headers=auth(tokens.admin))
    assert response.status_code == 400
    assert field in response.text


def test_unknown_instance_is_404_and_agents_may_not_boot(
    http: httpx.Client, tokens: Tokens, catalogue: Fleet
) -> None:
    missing = http.get("/v1/instances/nope", headers=auth(tokens.admin))
    assert missing.status_code == 404
    agent = http.post(
        "/v1/instances", json={"name": "vm", "flavor": "vf"}, headers=auth(tokens.agent)
    )
    assert agent.status_code == 403
    assert agent.json()["errors"][0]["code"] == "pcifleet.forbidden"
