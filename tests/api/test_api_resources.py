"""Every endpoint's happy path through the typed client on the in-process transport."""

from __future__ import annotations

import httpx
import pytest
from api_kit import PF, VFS, Fleet
from fastapi import FastAPI

from pcifleet.client import PcifleetClient, error_from_response
from pcifleet.control.api.schemas.devices import DeviceIn
from pcifleet.control.api.schemas.flavors import FlavorCreate
from pcifleet.control.api.schemas.groups import GroupCreate, GroupUpdate, MatchIn
from pcifleet.control.api.schemas.hosts import CellIO, InventoryIn
from pcifleet.domain.device import DeviceState, DeviceType
from pcifleet.domain.errors import (
    AlreadyExists,
    ConcurrentUpdate,
    Conflict,
    Forbidden,
    InvalidFlavor,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PcifleetError,
    Unauthorized,
    Unavailable,
)
from pcifleet.domain.request import NumaPolicy

Clients = dict[str, PcifleetClient]
GPU = MatchIn(vendor_id="10DE", product_id="2330")


def gpu_inventory(generation: int) -> InventoryIn:
    gpu = DeviceIn(
        address="0000:af:00.0",
        vendor_id="10de",
        product_id="2330",
        dev_type=DeviceType.PCI,
        class_code="030200",
        numa_node=1,
        label="NVIDIA H100",
    )
    cells = [CellIO(id=0, socket=0, cpus=[0, 1], memory_mb=1024)]
    return InventoryIn(generation=generation, devices=[gpu], cells=cells)


def test_health(clients: Clients) -> None:
    health = clients["alice"].health()
    assert (health.status, health.database, health.auth_mode) == ("ok", "ok", "tokens")


def test_agent_registers_reports_and_heartbeats_its_host(clients: Clients) -> None:
    agent = clients["agent"]
    host = agent.register_host("h1")
    assert (host.name, host.inventory_generation) == ("h1", 0)
    first = agent.report_inventory("h1", gpu_inventory(host.inventory_generation))
    assert (first.added, first.changed, first.inventory_generation) == (1, True, 1)
    same = agent.report_inventory("h1", gpu_inventory(first.inventory_generation))
    assert (same.changed, same.unchanged) == (False, 1)
    with pytest.raises(ConcurrentUpdate):
        agent.report_inventory("h1", gpu_inventory(0))
    assert agent.heartbeat("h1").state == "up"
    shown = agent.show_host("h1")
    assert [(d.address, d.label, d.class_code) for d in shown.devices] == [
        ("0000:af:00.0", "NVIDIA H100", "030200")
    ]
    assert shown.cells[0].cpus == [0, 1]
    assert [(p.dev_type, p.total, p.free, p.numa_node) for p in shown.pools] == [
        (DeviceType.PCI, 1, 1, 1)
    ]
    with pytest.raises(Forbidden):
        agent.register_host("h2")


def test_admin_views_hosts_and_disables_one(clients: Clients, fleet: Fleet) -> None:
    admin = clients["admin"]
    (summary,) = admin.list_hosts()
    assert (summary.name, summary.device_count, summary.devices_by_state) == (
        "h1",
        3,
        {"available": 3},
    )
    assert admin.list_hosts(state="down") == []
    disabled = admin.set_host_disabled("h1", True, "maintenance")
    assert (disabled.disabled, disabled.schedulable, disabled.disabled_reason) == (
        True,
        False,
        "maintenance",
    )
    detail = admin.show_host(fleet.host_id)
    assert {p.dev_type: (p.total, p.free) for p in detail.pools} == {
        DeviceType.PF: (1, 1),
        DeviceType.VF: (2, 2),
    }


@pytest.mark.parametrize(
    ("filters", "addresses"),
    [
        ({}, [PF, *VFS]),
        ({"type": "type-VF"}, list(VFS)),
        ({"host": "h1", "type": "type-PF"}, [PF]),
        ({"vendor_id": "8086", "product_id": "154C"}, list(VFS)),
        ({"physical_network": "physnet1", "numa_node": 0}, [PF, *VFS]),
        ({"physical_network": "physnet2"}, []),
        ({"state": "available", "limit": 1, "offset": 1}, [VFS[0]]),
        ({"vanished": True}, []),
    ],
)
def test_devices_are_filterable(
    clients: Clients, fleet: Fleet, filters: dict[str, str | int | bool], addresses: list[str]
) -> None:
    assert [d.address for d in clients["admin"].list_devices(**filters)] == addresses


def test_reserve_and_unreserve_follow_the_pf_vf_coupling(clients: Clients, fleet: Fleet) -> None:
    admin = clients["admin"]
    vf = fleet.device_ids[VFS[0]]
    assert admin.reserve_device(vf).state is DeviceState.RESERVED
    assert admin.show_device(fleet.device_ids[PF]).state is DeviceState.UNCLAIMABLE
    with pytest.raises(InvalidTransition):
        admin.reserve_device(vf)
    assert admin.unreserve_device(vf).state is DeviceState.AVAILABLE
    assert admin.show_device(fleet.device_ids[PF]).state is DeviceState.AVAILABLE
    with pytest.raises(NotFound):
        admin.reserve_device("no-such-device")


def test_groups_lifecycle_and_visibility(clients: Clients, fleet: Fleet) -> None:
    admin, alice, bob = clients["admin"], clients["alice"], clients["bob"]
    created = alice.create_group(GroupCreate(name="mine", match=[GPU], traits=["CUSTOM_X"]))
    assert (created.project, created.public, created.match[0].vendor_id) == (
        "alice",
        False,
        "10de",
    )
    assert [g.name for g in alice.list_groups()] == ["gpu", "mine", "vf-a"]
    assert [g.name for g in bob.list_groups()] == ["gpu"]
    assert [g.name for g in admin.list_groups(project="bob")] == ["gpu"]
    with pytest.raises(NotFound):
        bob.show_group("mine")
    updated = alice.update_group("mine", GroupUpdate(numa_policy=NumaPolicy.SOCKET))
    assert (updated.numa_policy, updated.traits) == (NumaPolicy.SOCKET, ["CUSTOM_X"])
    with pytest.raises(AlreadyExists):
        admin.create_group(GroupCreate(name="mine", match=[GPU]))
    quota = admin.set_group_quota("mine", "alice", 4)
    assert [(q.project, q.limit) for q in quota.quotas] == [("alice", 4)]
    assert alice.show_group("mine").quotas[0].limit == 4
    assert admin.delete_group_quota("mine", "alice").quotas == []
    alice.delete_group("mine")
    with pytest.raises(NotFound):
        alice.show_group("mine")


def test_group_names_with_url_characters_round_trip(clients: Clients) -> None:
    admin = clients["admin"]
    admin.create_group(GroupCreate(name="a100 80gb?#", match=[GPU]))
    assert admin.show_group("a100 80gb?#").name == "a100 80gb?#"
    admin.delete_group("a100 80gb?#")
    assert admin.list_groups() == []


def test_flavors_lifecycle(clients: Clients) -> None:
    admin, alice = clients["admin"], clients["alice"]
    body = FlavorCreate(
        name="nfv",
        vcpus=4,
        memory_mb=4096,
        numa_nodes=2,
        cpu_policy="dedicated",
        hugepage_size="1GB",
        extra_specs={"pci_passthrough:alias": "gpu:1", "hw:pci_numa_affinity_policy": "socket"},
    )
    created = admin.create_flavor(body)
    assert (created.numa_nodes, created.cpu_policy, created.page_size) == (
        2,
        "dedicated",
        "1048576",
    )
    assert [(g.group, g.count) for g in created.device_groups] == [("gpu", 1)]
    assert created.pci_numa_policy is NumaPolicy.SOCKET
    assert created.extra_specs["hw:numa_nodes"] == "2"
    assert alice.show_flavor("nfv") == created
    assert [f.name for f in alice.list_flavors()] == ["nfv"]
    with pytest.raises(InvalidFlavor) as caught:
        admin.create_flavor(
            FlavorCreate(name="x", vcpus=1, memory_mb=1, extra_specs={"hw:cpu_policy": "odd"})
        )
    assert caught.value.fields["field"] == "hw:cpu_policy"
    admin.delete_flavor("nfv")
    assert admin.list_flavors() == []


def test_tokens_lifecycle(clients: Clients) -> None:
    admin = clients["admin"]
    created = admin.create_token("agent", host="h7", name="agent-h7")
    assert (created.role, created.host, created.name, len(created.token)) == (
        "agent",
        "h7",
        "agent-h7",
        43,
    )
    assert "agent-h7" in [t.name for t in admin.list_tokens()]
    assert admin.revoke_token(created.id).revoked is True
    with pytest.raises(InvalidInput):
        admin.create_token("member")


def test_client_errors_are_the_domain_classes(clients: Clients, app: FastAPI) -> None:
    with pytest.raises(Forbidden) as caught:
        clients["alice"].list_hosts()
    assert (caught.value.code, caught.value.fields["status"]) == ("pcifleet.forbidden", 403)
    with PcifleetClient.in_process(app, "wrong") as stranger, pytest.raises(Unauthorized):
        stranger.list_groups()


def _response(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def _error(code: str, status: int) -> dict[str, object]:
    return {"errors": [{"status": status, "code": code, "title": "t", "detail": "d", "meta": {}}]}


@pytest.mark.parametrize(
    ("response", "kind", "code"),
    [
        (_response(409, _error("pcifleet.concurrent_update", 409)), ConcurrentUpdate, None),
        (_response(400, _error("pcifleet.flavor.invalid", 400)), InvalidFlavor, None),
        (_response(409, _error("pcifleet.future.thing", 409)), Conflict, "pcifleet.future.thing"),
        (_response(404, {"detail": "not ours"}), NotFound, "pcifleet.not_found"),
        (httpx.Response(502, text="<html>bad gateway</html>"), PcifleetError, "pcifleet.error"),
        (_response(503, _error("pcifleet.unavailable", 503)), Unavailable, None),
    ],
)
def test_error_classes_by_code_then_status(
    response: httpx.Response, kind: type[PcifleetError], code: str | None
) -> None:
    error = error_from_response(response)
    assert type(error) is kind
    assert error.fields["code"] == (code or kind.code)
    assert error.fields["status"] == response.status_code


def test_a_decoded_error_keeps_the_servers_message_verbatim() -> None:
    # InvalidVfSetting's template is "VF setting {field}: {detail}": the server already
    # rendered it, so the client must not prefix it a second time
    detail = "VF setting max_burst_kbps: 100 kbit/s cannot be enforced"
    response = httpx.Response(
        400,
        json={"errors": [{"status": 400, "code": "pcifleet.vf.invalid_setting", "detail": detail}]},
    )
    error = error_from_response(response)
    assert str(error) == detail
    assert error.message == detail
