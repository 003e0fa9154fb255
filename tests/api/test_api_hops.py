"""A handler crosses into the thread pool once per request: the route table wraps each plain
``def`` handler in an async endpoint that runs it in the pool, so FastAPI validates the
response on the event loop instead of crossing again (and an authenticated request whose
token was checked lately resolves its caller on the loop, with no crossing at all).

Exercised over a real ASGI stack (httpx's ASGI transport), with the route table's own
``install``.
"""

# no ``from __future__ import annotations``: FastAPI resolves the endpoint's annotations, and
# the test's handler and model are local

import asyncio
import threading
from typing import Annotated

import httpx
from fastapi import FastAPI, Path
from pydantic import BaseModel, ConfigDict, field_validator

from pcifleet.control.api import routes
from pcifleet.control.api.app import create_app
from pcifleet.control.container import Services
from pcifleet.control.services.principal import Role


def _get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(run())


def test_the_handler_runs_in_the_pool_and_its_response_is_validated_on_the_loop() -> None:
    threads: dict[str, int] = {}

    class Out(BaseModel):
        model_config = ConfigDict(revalidate_instances="always")  # FastAPI validates it
        number: int

        @field_validator("number")
        @classmethod
        def noted(cls, value: int) -> int:
            threads["validate"] = threading.get_ident()
            return value

    def work(number: Annotated[int, Path(ge=0)]) -> Out:
        """Echo the number."""
        threads["handler"] = threading.get_ident()
        return Out.model_construct(number=number)

    app = FastAPI()

    @app.middleware("http")
    async def loop_thread(request, call_next):  # type: ignore[no-untyped-def]
        threads["loop"] = threading.get_ident()
        return await call_next(request)

    routes.install(app, [routes.Route("GET", "/work/{number}", work)])
    response = _get(app, "/work/7")
    assert response.status_code == 200 and response.json() == {"number": 7}
    assert threads["handler"] != threads["loop"]
    assert threads["validate"] == threads["loop"]
    # FastAPI still read the handler: its parameter rule, its response model, its docstring
    assert _get(app, "/work/-1").status_code == 422
    operation = app.openapi()["paths"]["/work/{number}"]["get"]
    assert operation["description"] == "Echo the number."
    number = {"type": "integer", "minimum": 0, "title": "Number"}
    assert operation["parameters"][0]["schema"] == number
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Out"}


def test_an_async_handler_is_installed_as_it_is() -> None:
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    assert routes.in_one_hop(ready) is ready


def test_a_token_checked_once_is_known_to_the_event_loop_after(services: Services) -> None:
    # the first request reads the token row in the pool; the next ones find it in the cache
    _info, secret = services.tokens.create(Role.ADMIN)
    app = create_app(services)
    headers = {"Authorization": f"Bearer {secret}"}
    assert services.tokens.known(secret) is None
    assert _get(app, "/v1/flavors", headers).status_code == 200
    assert services.tokens.known(secret) is not None
    assert _get(app, "/v1/flavors", headers).status_code == 200
    assert _get(app, "/v1/flavors", {"Authorization": "Bearer nope"}).status_code == 401
