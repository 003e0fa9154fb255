"""One error document for every failure: stable codes, the field named for bad input, 503 when
the database is unreachable, 500 without internals; never a 500 for malformed input."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from api_kit import BASE_URL, Tokens, auth
from fastapi import FastAPI

from pcifleet.client import InProcessTransport, PcifleetClient
from pcifleet.control.api.app import create_app
from pcifleet.control.api.routes import Route
from pcifleet.control.container import Services, build_services
from pcifleet.control.settings import Settings
from pcifleet.domain.errors import Unavailable

GPU = {"vendor_id": "10de", "product_id": "2330"}
UNREACHABLE_PG = "postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=2"


def only_error(response: httpx.Response) -> dict[str, Any]:
    """The first error of the document, after checking the shape of every one."""
    errors = response.json()["errors"]
    assert errors
    for error in errors:
        assert set(error) == {"status", "code", "title", "detail", "meta"}
        assert error["status"] == response.status_code
    assert response.headers["content-type"] == "application/json"
    return dict(errors[0])


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/groups", {"match": [GPU]}, "name"),
        ("POST", "/v1/groups", {"name": "g", "match": []}, "match"),
        ("POST", "/v1/groups", {"name": "g", "match": [GPU], "colour": "red"}, "colour"),
        (
            "POST",
            "/v1/groups",
            {"name": "g", "match": [{"vendor_id": "10dex"}]},
            "match[0].vendor_id",
        ),
        ("POST", "/v1/groups", {"name": "g", "match": [GPU], "numa_policy": "x"}, "numa_policy"),
        ("POST", "/v1/groups", {"name": "g/h", "match": [GPU]}, "name"),
        ("POST", "/v1/groups", {"name": "g", "match": [GPU], "traits": ["lower"]}, "traits[0]"),
        ("PATCH", "/v1/groups/gpu", {"name": "other"}, "name"),
        ("PUT", "/v1/groups/gpu/quotas/alice", {"limit": -1}, "limit"),
        ("POST", "/v1/flavors", {"name": "f", "vcpus": 0, "memory_mb": 1}, "vcpus"),
        ("POST", "/v1/flavors", {"name": "f", "vcpus": "two", "memory_mb": 1}, "vcpus"),
        (
            "POST",
            "/v1/flavors",
            {
                "name": "f",
                "vcpus": 1,
                "memory_mb": 1,
                "extra_specs": {"pci_passthrough:alias": "x"},
            },
            "pci_passthrough:alias",
        ),
        (
            "POST",
            "/v1/flavors",
            {"name": "f", "vcpus": 3, "memory_mb": 3, "extra_specs": {"hw:numa_nodes": "2"}},
            "hw:numa_nodes",
        ),
        ("POST", "/v1/hosts", {"name": ""}, "name"),
        ("PUT", "/v1/hosts/h1/inventory", {"generation": -1}, "generation"),
        (
            "PUT",
            "/v1/hosts/h1/inventory",
            {"generation": 0, "devices": [{"address": "0000:3b:00.8"}]},
            "devices[0].address",
        ),
        ("GET", "/v1/devices?numa_node=-1", None, "numa_node"),
        ("GET", "/v1/devices?type=type-XYZ", None, "type"),
        ("GET", "/v1/devices?vendor_id=zz", None, "vendor_id"),
        ("POST", "/v1/tokens", {"role": "member"}, "project"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    http: httpx.Client, tokens: Tokens, method: str, path: str, body: Any, field: str
) -> None:
    http.post("/v1/groups", json={"name": "gpu", "match": [GPU]}, headers=auth(tokens.admin))
    response = http.request(method, path, json=body, headers=auth(tokens.admin))
    assert response.status_code == 400, response.text
    fields = [e["meta"].get("field") for e in response.json()["errors"]]
    assert field in fields
    for error in response.json()["errors"]:
        assert error["code"].startswith("pcifleet.")
        assert error["meta"].get("field", "") in error["detail"] or error["detail"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[]", b"null", b'{"name": 1}', '{"name": "\u00e9"'.encode()],
)
def test_malformed_bodies_are_400_not_500(
    http: httpx.Client, tokens: Tokens, content: bytes
) -> None:
    headers = auth(tokens.admin) | {"Content-Type": "application/json"}
    response = http.post("/v1/groups", content=content, headers=headers)
    assert response.status_code == 400
    assert only_error(response)["code"] == "pcifleet.invalid_input"


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/nowhere", 404, "pcifleet.not_found"),
        ("GET", "/v1/groups/missing", 404, "pcifleet.not_found"),
        ("GET", "/v1/flavors/missing", 404, "pcifleet.not_found"),
        ("GET", "/v1/hosts/missing", 404, "pcifleet.not_found"),
        ("GET", "/v1/devices/missing", 404, "pcifleet.not_found"),
        ("DELETE", "/v1/tokens/missing", 404, "pcifleet.not_found"),
        ("PUT", "/v1/health", 405, "pcifleet.method_not_allowed"),
    ],
)
def test_framework_and_domain_errors_share_the_document(
    http: httpx.Client, tokens: Tokens, method: str, path: str, status: int, code: str
) -> None:
    response = http.request(method, path, headers=auth(tokens.admin))
    assert response.status_code == status
    assert only_error(response)["code"] == code


def test_conflicts_carry_their_own_codes(http: httpx.Client, tokens: Tokens) -> None:
    body = {"name": "gpu", "match": [GPU]}
    assert http.post("/v1/groups", json=body, headers=auth(tokens.admin)).status_code == 201
    again = http.post("/v1/groups", json=body, headers=auth(tokens.admin))
    assert (again.status_code, only_error(again)["code"]) == (409, "pcifleet.already_exists")
    http.post("/v1/hosts", json={"name": "h1"}, headers=auth(tokens.agent))
    report = {"generation": 5}
    stale = http.put("/v1/hosts/h1/inventory", json=report, headers=auth(tokens.agent))
    assert (stale.status_code, only_error(stale)["code"]) == (409, "pcifleet.concurrent_update")


def test_unexpected_errors_are_500_without_internals(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    app = create_app(services, extra_routes=[Route("GET", "/v1/explode", explode)])
    transport = InProcessTransport(app)
    with (
        httpx.Client(transport=transport, base_url=BASE_URL) as http,
        caplog.at_level(logging.ERROR),
    ):
        response = http.get("/v1/explode")
    assert response.status_code == 500
    error = only_error(response)
    assert error["code"] == "pcifleet.internal"
    assert "secret" not in response.text and "Traceback" not in response.text
    assert "secret internals" in caplog.text


@pytest.fixture
def unreachable_app(tmp_path: Any) -> Any:
    settings = Settings(data_dir=tmp_path, database_url=UNREACHABLE_PG)
    services = build_services(settings)
    yield create_app(services)
    services.close()


@pytest.mark.parametrize("path", ["/v1/health", "/v1/groups", "/v1/hosts"])
def test_database_unreachable_is_503(unreachable_app: FastAPI, path: str) -> None:
    with httpx.Client(transport=InProcessTransport(unreachable_app), base_url=BASE_URL) as http:
        response = http.get(path, headers=auth("any-token"))
    assert response.status_code == 503
    assert only_error(response)["code"] == "pcifleet.unavailable"
    assert response.headers["Retry-After"] == "1"
    assert "psycopg" not in response.text


def test_client_raises_unavailable_for_503_and_for_no_server(unreachable_app: FastAPI) -> None:
    with PcifleetClient.in_process(unreachable_app, "t") as client:
        with pytest.raises(Unavailable) as caught:
            client.list_groups()
        assert caught.value.fields["code"] == "pcifleet.unavailable"
    nowhere = PcifleetClient("http://127.0.0.1:1", "t", timeout=2)
    with nowhere, pytest.raises(Unavailable, match="cannot reach the controller"):
        nowhere.health()
