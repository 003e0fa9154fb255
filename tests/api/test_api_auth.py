"""Authentication (401) and the role rules (403) over HTTP, for every route."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from api_kit import BASE_URL, PF, VFS, Fleet, Tokens, auth
from fastapi import FastAPI

from pcifleet.client import InProcessTransport
from pcifleet.control.api.app import create_app
from pcifleet.control.api.auth import SINGLE_USER_WARNING
from pcifleet.control.container import Services

GPU = {"vendor_id": "10de", "product_id": "2330"}
# (method, path, body, status for admin, for member alice, for agent of h1)
MATRIX: list[tuple[str, str, Any, int, int, int]] = [
    ("GET", "/v1/hosts", None, 200, 403, 403),
    ("GET", "/v1/hosts/h1", None, 200, 403, 200),
    ("POST", "/v1/hosts", {"name": "h1"}, 201, 403, 201),
    ("POST", "/v1/hosts", {"name": "h9"}, 201, 403, 403),
    ("POST", "/v1/hosts/h1/heartbeat", None, 200, 403, 200),
    ("PUT", "/v1/hosts/h1/inventory", {"generation": 1}, 200, 403, 200),
    ("PATCH", "/v1/hosts/h1", {"disabled": True}, 200, 403, 403),
    ("GET", "/v1/devices", None, 200, 403, 403),
    ("GET", "/v1/devices/{pf}", None, 200, 403, 403),
    ("POST", "/v1/devices/{vf}/reserve", None, 200, 403, 403),
    ("GET", "/v1/groups", None, 200, 200, 403),
    ("GET", "/v1/groups/gpu", None, 200, 200, 403),
    ("GET", "/v1/groups/vf-a", None, 200, 200, 403),
    ("POST", "/v1/groups", {"name": "new", "match": [GPU], "project": "bob"}, 201, 403, 403),
    ("POST", "/v1/groups", {"name": "new", "match": [GPU], "project": "alice"}, 201, 201, 403),
    ("PATCH", "/v1/groups/gpu", {"numa_policy": "required"}, 200, 403, 403),
    ("PATCH", "/v1/groups/vf-a", {"numa_policy": "required"}, 200, 200, 403),
    ("DELETE", "/v1/groups/gpu", None, 204, 403, 403),
    ("DELETE", "/v1/groups/vf-a", None, 204, 204, 403),
    ("PUT", "/v1/groups/gpu/quotas/alice", {"limit": 1}, 200, 403, 403),
    ("GET", "/v1/flavors", None, 200, 200, 403),
    ("GET", "/v1/flavors/small", None, 200, 200, 403),
    ("POST", "/v1/flavors", {"name": "big", "vcpus": 8, "memory_mb": 8192}, 201, 403, 403),
    ("DELETE", "/v1/flavors/small", None, 204, 403, 403),
    ("GET", "/v1/tokens", None, 200, 403, 403),
    ("POST", "/v1/tokens", {"role": "admin"}, 201, 403, 403),
]
ROLES = ("admin", "alice", "agent")
CASES = [
    pytest.param(method, path, body, role, row[3 + i], id=f"{role}-{method}-{path}")
    for row in MATRIX
    for i, role in enumerate(ROLES)
    for method, path, body in [row[:3]]
]


@pytest.mark.parametrize(("method", "path", "body", "role", "status"), CASES)
def test_role_matrix(
    http: httpx.Client,
    tokens: Tokens,
    fleet: Fleet,
    method: str,
    path: str,
    body: Any,
    role: str,
    status: int,
) -> None:
    url = path.format(pf=fleet.device_ids[PF], vf=fleet.device_ids[VFS[0]])
    response = http.request(method, url, json=body, headers=auth(tokens.of(role)))
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["errors"][0]["code"] == "pcifleet.forbidden"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "bearer "},
    ],
)
def test_missing_or_unknown_token_is_401(http: httpx.Client, headers: dict[str, str]) -> None:
    response = http.get("/v1/groups", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    (error,) = response.json()["errors"]
    assert (error["status"], error["code"]) == (401, "pcifleet.unauthorized")


def test_revoked_token_is_refused(
    http: httpx.Client, tokens: Tokens, services: Services, app: FastAPI
) -> None:
    created = http.post(
        "/v1/tokens", json={"role": "member", "project": "p"}, headers=auth(tokens.admin)
    ).json()
    assert http.get("/v1/groups", headers=auth(created["token"])).status_code == 200
    revoked = http.delete(f"/v1/tokens/{created['id']}", headers=auth(tokens.admin))
    assert revoked.json()["revoked"] is True
    assert http.get("/v1/groups", headers=auth(created["token"])).status_code == 401


def test_health_needs_no_token_and_says_tokens_mode(http: httpx.Client) -> None:
    body = http.get("/v1/health").json()
    assert (body["status"], body["auth_mode"], body["warnings"]) == ("ok", "tokens", [])


def test_single_user_mode_is_explicit_and_warned(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        app = create_app(services, auth_mode="single-user")
    assert SINGLE_USER_WARNING in caplog.text
    with httpx.Client(transport=InProcessTransport(app), base_url=BASE_URL) as http:
        health = http.get("/v1/health").json()
        assert health["auth_mode"] == "single-user"
        assert health["warnings"] == [SINGLE_USER_WARNING]
        assert http.post("/v1/tokens", json={"role": "admin"}).status_code == 201


def test_tokens_are_stored_hashed(http: httpx.Client, tokens: Tokens, services: Services) -> None:
    created = http.post("/v1/tokens", json={"role": "admin"}, headers=auth(tokens.admin)).json()
    with services.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT token_hash FROM tokens").scalars().all()
    assert created["token"] not in stored
    assert all(len(value) == 64 for value in stored)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "member"}, "project"),
        ({"role": "agent"}, "host"),
        ({"role": "admin", "project": "p"}, "project"),
        ({"role": "agent", "host": "h1", "project": "p"}, "project"),
        ({"role": "root"}, "role"),
    ],
)
def test_token_scope_must_fit_the_role(
    http: httpx.Client, tokens: Tokens, body: dict[str, str], field: str
) -> None:
    response = http.post("/v1/tokens", json=body, headers=auth(tokens.admin))
    assert response.status_code == 400
    assert response.json()["errors"][0]["meta"]["field"] == field
