"""API fixtures: a fresh migrated SQLite database per test, the app in-process, tokens for
every role, and a small fleet (one host with a PF and two VFs, a public and a private group,
a flavor) written through the services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_kit import BASE_URL, Fleet, Tokens, nic_inventory
from fastapi import FastAPI

from pcifleet.client import InProcessTransport, PcifleetClient
from pcifleet.control.api.app import create_app
from pcifleet.control.container import Services, build_services
from pcifleet.control.services.flavors import parse_flavor
from pcifleet.control.services.principal import LOCAL_ADMIN, Principal, Role
from pcifleet.control.settings import settings_from_env
from pcifleet.domain.group import DeviceGroup


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = settings_from_env({}, data_dir=tmp_path)
    built = build_services(settings, migrate_schema=True)
    yield built
    built.close()


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services)


@pytest.fixture
def tokens(services: Services) -> Tokens:
    def make(role: Role, **scope: str) -> str:
        return services.tokens.create(role, **scope)[1]

    return Tokens(
        admin=make(Role.ADMIN),
        alice=make(Role.MEMBER, project="alice"),
        bob=make(Role.MEMBER, project="bob"),
        agent=make(Role.AGENT, host="h1"),
    )


@pytest.fixture
def http(app: FastAPI) -> Iterator[httpx.Client]:
    """A raw HTTP client of the in-process app (no token: pass ``headers=auth(token)``)."""
    with httpx.Client(transport=InProcessTransport(app), base_url=BASE_URL) as client:
        yield client


@pytest.fixture
def clients(app: FastAPI, tokens: Tokens) -> Iterator[dict[str, PcifleetClient]]:
    """One typed client per role, on the in-process transport."""
    made = {
        role: PcifleetClient.in_process(app, tokens.of(role))
        for role in ("admin", "alice", "bob", "agent")
    }
    yield made
    for client in made.values():
        client.close()


@pytest.fixture
def fleet(services: Services) -> Fleet:
    host = services.inventory.register_host("h1")
    services.inventory.report("h1", 0, nic_inventory())
    ids = {str(d.device.address): d.id for d in services.inventory.show_host("h1").devices}
    gpu = {"vendor_id": "10de", "product_id": "2330"}
    services.groups.create(LOCAL_ADMIN, DeviceGroup.from_dict({"name": "gpu", "match": [gpu]}))
    alice = Principal(Role.MEMBER, project="alice")
    services.groups.create(alice, DeviceGroup.from_dict({"name": "vf-a", "match": [gpu]}))
    services.flavors.create(LOCAL_ADMIN, parse_flavor("small", 2, 2048, {}))
    return Fleet(host.id, ids)
