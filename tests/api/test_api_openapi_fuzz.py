"""Bad input over the whole API: schemathesis generates requests from ``/openapi.json``, valid
and invalid ones, for every operation; none may produce a 500.

Bounded (a few examples per operation and mode, derandomized) so it stays a few seconds; the
requests go through the in-process transport as an admin, over a database holding a small
fleet so that item routes also reach their handlers.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from api_kit import BASE_URL, Fleet, Tokens, auth
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from pcifleet.client import InProcessTransport

EXAMPLES = 4


def _send(http: httpx.Client, case: Any, token: str) -> httpx.Response:
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    headers = {
        k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"
    }
    content = kwargs.get("data")
    return http.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params"),
        json=kwargs.get("json"),
        content=content if isinstance(content, bytes | str) else None,
        headers=headers | auth(token),
    )


def _checker(
    operation: Any, mode: GenerationMode, http: httpx.Client, token: str, seen: dict[int, int]
) -> Any:
    """One bounded hypothesis run over ``operation`` (a function, so it binds its arguments)."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        response = _send(http, case, token)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (operation.label, response.text)
        if response.status_code >= 400:
            assert response.json()["errors"][0]["code"].startswith("pcifleet.")

    return check


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_from_the_openapi_document_is_a_500(
    app: FastAPI, tokens: Tokens, fleet: Fleet, mode: GenerationMode
) -> None:
    document = app.openapi()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(item) for item in document["paths"].values())
    seen: dict[int, int] = {}
    with httpx.Client(transport=InProcessTransport(app), base_url=BASE_URL) as http:
        for operation in operations:
            try:
                _checker(operation, mode, http, tokens.admin, seen)()
            except Unsatisfiable:
                # nothing to get wrong: no parameters and no body (GET /v1/health, ...)
                assert mode is GenerationMode.NEGATIVE
                assert not operation.path_parameters and not operation.body
    assert sum(seen.values()) >= len(operations)
    if mode is GenerationMode.NEGATIVE:
        assert seen.get(400, 0) > 0
