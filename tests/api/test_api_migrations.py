"""Live migration over the in-process app: ``POST /v1/instances/{id}/migrate`` (dry run and
real), ``GET .../migration``, ``POST .../migration/complete`` and ``.../abort``, with the
typed client and raw HTTP for the error documents (409 refused / no valid host / state, 400
naming the field, 403 by role)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_kit import PF, VFS, Fleet, Tokens, auth, nic_inventory
from fastapi import FastAPI

from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.instances import InstanceOut, NicIn
from pcifleet.control.api.schemas.networks import NetworkCreate, SegmentIn
from pcifleet.control.container import Services
from pcifleet.control.services.inventory import InventoryReport
from pcifleet.control.services.principal import Role
from pcifleet.domain.errors import (
    Forbidden,
    MigrationRefused,
    MigrationStateError,
    NotFound,
    NoValidHost,
)
from pcifleet.domain.numa import NumaCell
from pcifleet.domain.vnic import VnicType
from pcifleet.network.segments import NetworkType

VLAN = SegmentIn(network_type=NetworkType.VLAN, physical_network="physnet1")


def states(admin: PcifleetClient) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {(d.host, d.address): (d.state, d.instance_id) for d in admin.list_devices()}


def boot(client: PcifleetClient, *vnics: VnicType) -> InstanceOut:
    client.create_network(NetworkCreate(name="n1", segments=[VLAN], shared=True))
    vm = client.boot("vm1", "small", nics=[NicIn(net="n1", vnic_type=v) for v in vnics])
    assert vm.state == "active" and vm.host in ("h1", "h2")
    return vm


def other(host: str | None) -> str:
    return "h2" if host == "h1" else "h1"


def add_host(services: Services, name: str = "h2", report: InventoryReport | None = None) -> None:
    """A second host, registered before the first boot (the scheduler's index loads then)."""
    services.inventory.register_host(name)
    services.inventory.report(name, 0, report or nic_inventory())


def agent_of(app: FastAPI, services: Services, host: str | None) -> PcifleetClient:
    token = services.tokens.create(Role.AGENT, host=host or "")[1]
    return PcifleetClient.in_process(app, token)


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    first: dict[str, Any] = response.json()["errors"][0]
    return first


def test_dry_run_shows_every_device_and_claims_nothing(
    clients: dict[str, PcifleetClient], services: Services, fleet: Fleet
) -> None:
    admin = clients["admin"]
    add_host(services)
    vm = boot(admin, VnicType.MACVTAP, VnicType.DIRECT)
    before = states(admin)
    result = admin.migrate(vm.id, dry_run=True)
    plan = result.plan
    assert result.migration is None and plan.allowed and plan.refusal == ""
    assert (plan.source_host, plan.destination_host) == (vm.host, other(vm.host))
    assert [(i.requester_kind, i.vnic_type, i.action) for i in plan.items] == [
        ("port", "macvtap", "transparent"),
        ("port", "direct", "unplug-replug"),
    ]
    assert all(i.source[0] in VFS and i.destination[0] in VFS for i in plan.items)
    assert "rewritten" in plan.items[0].reason and "unplugged" in plan.items[1].reason
    assert "will be unplugged" in plan.warnings[0]
    assert states(admin) == before
    with pytest.raises(NotFound):
        admin.show_migration(vm.id)


def test_migrate_claims_the_destination_and_the_agent_completes(
    app: FastAPI, clients: dict[str, PcifleetClient], services: Services, fleet: Fleet
) -> None:
    admin = clients["admin"]
    add_host(services)
    vm = boot(admin, VnicType.DIRECT)
    dest_host = other(vm.host)
    result = admin.migrate(vm.id, host=dest_host)
    migration = result.migration
    assert migration is not None and migration.state == "migrating"
    assert (migration.source_host, migration.destination_host) == (vm.host, dest_host)
    assert migration.destination_host_id != migration.source_host_id
    dest = result.plan.items[0].destination[0]
    table = states(admin)
    assert table[(dest_host, dest)] == ("allocated", vm.id)  # held on both hosts meanwhile
    assert table[(vm.host or "", vm.requests[0].devices[0])] == ("allocated", vm.id)
    assert admin.show_migration(vm.id).id == migration.id
    with agent_of(app, services, vm.host) as agent:  # the source host's agent reports
        done = agent.complete_migration(vm.id)
        assert done.state == "completed" and done.id == migration.id
        with pytest.raises(MigrationStateError):
            agent.complete_migration(vm.id)
    moved = admin.show_instance(vm.id)
    assert moved.host == dest_host and moved.requests[0].devices == [dest]
    assert states(admin)[(vm.host or "", PF)] == ("available", None)


def test_abort_frees_the_destination_with_the_reason(
    app: FastAPI, clients: dict[str, PcifleetClient], services: Services, fleet: Fleet
) -> None:
    admin = clients["admin"]
    add_host(services)
    vm = boot(admin, VnicType.MACVTAP)
    before = states(admin)
    assert admin.migrate(vm.id).migration is not None
    assert states(admin) != before
    with agent_of(app, services, vm.host) as agent:
        aborted = agent.abort_migration(vm.id, "libvirt: migration failed")
    assert aborted.state == "aborted" and aborted.reason == "libvirt: migration failed"
    assert states(admin) == before
    assert admin.show_instance(vm.id).host == vm.host


def test_a_refused_plan_is_409_naming_each_device(
    http: httpx.Client,
    clients: dict[str, PcifleetClient],
    services: Services,
    tokens: Tokens,
    fleet: Fleet,
) -> None:
    admin = clients["admin"]
    add_host(services)
    vm = boot(admin, VnicType.DIRECT_PHYSICAL)
    dry = admin.migrate(vm.id, dry_run=True).plan
    assert not dry.allowed and [i.action for i in dry.items] == ["refused"]
    assert dry.items[0].source == [PF] and "not marked live_migratable" in dry.refusal
    response = http.post(f"/v1/instances/{vm.id}/migrate", json={}, headers=auth(tokens.admin))
    found = error(response, 409)
    assert found["code"] == "pcifleet.migration.refused"
    assert PF in found["detail"] and PF in found["meta"]["devices"]
    assert "not marked live_migratable" in found["detail"]
    with pytest.raises(MigrationRefused):
        admin.migrate(vm.id)
    with pytest.raises(NotFound):
        admin.show_migration(vm.id)


def test_no_destination_is_409_with_the_reason(
    http: httpx.Client,
    clients: dict[str, PcifleetClient],
    services: Services,
    tokens: Tokens,
    fleet: Fleet,
) -> None:
    # h2 has memory and CPUs but no NIC at all
    add_host(services, "h2", InventoryReport([], [NumaCell(0, 0, frozenset(range(8)), 16384)]))
    vm = boot(clients["admin"], VnicType.DIRECT)
    assert vm.host == "h1"
    for body in ({}, {"dry_run": True}, {"host": "h2"}):
        response = http.post(
            f"/v1/instances/{vm.id}/migrate", json=body, headers=auth(tokens.admin)
        )
        found = error(response, 409)
        assert found["code"] == "pcifleet.schedule.no_valid_host"
        assert "no destination" in found["detail"]
        assert "fewer than 1 free devices on physnet1" in found["detail"]
    with pytest.raises(NoValidHost):
        clients["admin"].migrate(vm.id)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("migrate", {"dry_run": "maybe"}, "dry_run"),
        ("migrate", {"host": ""}, "host"),
        ("migrate", {"hots": "h2"}, "hots"),
        ("migration/abort", {}, "reason"),
        ("migration/abort", {"reason": ""}, "reason"),
    ],
)
def test_a_bad_body_is_400_naming_the_field(
    http: httpx.Client, tokens: Tokens, fleet: Fleet, path: str, body: dict[str, Any], field: str
) -> None:
    response = http.post(f"/v1/instances/x/{path}", json=body, headers=auth(tokens.admin))
    found = error(response, 400)
    assert found["code"] == "pcifleet.invalid_input" and found["meta"]["field"] == field


def test_roles(
    http: httpx.Client,
    clients: dict[str, PcifleetClient],
    services: Services,
    tokens: Tokens,
    fleet: Fleet,
) -> None:
    add_host(services)
    vm = boot(clients["admin"], VnicType.MACVTAP)
    for role in ("alice", "agent"):
        with pytest.raises(Forbidden):
            clients[role].migrate(vm.id, dry_run=True)
    with pytest.raises(MigrationStateError):
        clients["admin"].complete_migration(vm.id)  # nothing in flight
    clients["admin"].migrate(vm.id)
    stranger = services.tokens.create(Role.AGENT, host=other(vm.host))[1]
    response = http.post(f"/v1/instances/{vm.id}/migration/complete", headers=auth(stranger))
    assert error(response, 403)["code"] == "pcifleet.forbidden"
    response = http.post(
        f"/v1/instances/{vm.id}/migration/abort", json={"reason": "x"}, headers=auth(stranger)
    )
    assert error(response, 403)["code"] == "pcifleet.forbidden"
    assert clients["alice"].show_migration(vm.id).state == "migrating"
    assert http.post(f"/v1/instances/{vm.id}/migrate", json={}).status_code == 401
