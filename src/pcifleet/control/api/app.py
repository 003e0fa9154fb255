"""Build the controller's ASGI app from its services: no globals, no import-time I/O.

``create_app(services)`` is what tests, the demo and the in-process client use;
:func:`app_from_env` is the factory ``uvicorn --factory`` (and ``pcifleet server --workers
N``) imports in each worker process: it reads the settings once from the environment the
``server`` command prepared, builds the services and the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from pcifleet import __version__
from pcifleet.control.api import errors, routes
from pcifleet.control.api.auth import AppState, AuthMode, attach_state
from pcifleet.control.api.balance import BEAT_S, ConnectionBalance, Rebalance, table_from_env
from pcifleet.control.api.schemas.common import ErrorDocument
from pcifleet.control.api.slots import RequestSlots
from pcifleet.control.container import Services, build_services
from pcifleet.control.settings import settings_from_env

log = logging.getLogger(__name__)

#: environment variable the ``server`` command sets for its workers
ENV_AUTH_MODE = "PCIFLEET_AUTH_MODE"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorDocument"}
_ERROR_RESPONSE = {
    "description": "An error document with a stable code",
    "content": {"application/json": {"schema": _ERROR_REF}},
}


def create_app(
    services: Services,
    *,
    auth_mode: AuthMode | str = AuthMode.TOKENS,
    extra_routes: Iterable[routes.Route] = (),
    reap_heartbeats: bool = False,
    request_slots: int | None = None,
    balance: ConnectionBalance | None = None,
) -> FastAPI:
    """The API over ``services``; ``auth_mode="single-user"`` disables authentication.

    ``extra_routes`` adds rows to :data:`routes.ROUTES` (for areas that build their own).
    ``reap_heartbeats`` runs, while a server serves the app, a task that marks hosts down when
    their heartbeats stop (every process may run it: the update is idempotent); such a serving
    process also loads the scheduler's index before the first request (:func:`_settle`).
    ``request_slots`` runs that many HTTP requests at once, the others in line
    (:mod:`~pcifleet.control.api.slots`; a server passes ``Settings.request_threads``);
    None: no limit. ``balance``: a worker of ``server --workers N`` moves clients to the
    other workers when it holds more than its share (:mod:`~pcifleet.control.api.balance`).
    """
    app = FastAPI(
        title="pcifleet",
        version=__version__,
        summary="PCI passthrough and SR-IOV devices across a fleet of virtualization hosts",
        docs_url="/docs",
        redoc_url=None,
        lifespan=_reaper(services, balance) if reap_heartbeats else None,
    )
    attach_state(app, AppState(services, AuthMode(auth_mode)))
    errors.install(app)
    routes.install(app, (*routes.ROUTES, *extra_routes))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    if request_slots is not None:
        app.add_middleware(RequestSlots, slots=request_slots)
    if balance is not None:  # outside the slots: a client counts from its arrival
        app.add_middleware(Rebalance, balance=balance)
    return app


def _reaper(
    services: Services, balance: ConnectionBalance | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The serving lifespan: settle, then beat the heartbeat check, the index catch-up and
    (a worker of several) the connection count the other workers read."""
    heartbeat_s = max(1.0, services.settings.heartbeat_timeout_s / 3)
    scheduler = services.instances.scheduler
    beats: dict[str, tuple[float, Callable[[], object]]] = {
        "heartbeat check": (heartbeat_s, _mark_down(services)),
        "index catch-up": (scheduler.options.refresh_interval_s, scheduler.follow),
    }
    if balance is not None:
        beats["connection count"] = (BEAT_S, balance.publish)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_settle, services)
        tasks = [asyncio.create_task(_beat(n, s, work)) for n, (s, work) in beats.items()]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks)

    return lifespan


def _mark_down(services: Services) -> Callable[[], None]:
    def mark() -> None:
        down = services.inventory.mark_down_stale()
        if down:
            log.warning("hosts marked down (no heartbeat): %s", ", ".join(down))

    return mark


async def _beat(name: str, interval_s: float, work: Callable[[], object]) -> None:
    """Run ``work`` in a worker thread about every ``interval_s`` until cancelled; a round that
    fails is logged and the next one runs (a beat that died would silently stop the work).

    Each pause is drawn from 0.5-1.5 x ``interval_s``: the worker processes of one server
    start together, and their index catch-ups (each replaying the others' claims) ran in
    step, taking the CPU from every process's requests at once."""
    own = anyio.CapacityLimiter(1)  # not the requests' pool: a beat never waits in their line
    jitter = random.Random()
    while True:
        await asyncio.sleep(interval_s * jitter.uniform(0.5, 1.5))
        try:
            await anyio.to_thread.run_sync(work, limiter=own)
        except errors.DATABASE_DOWN as exc:
            log.warning("%s skipped, database unavailable: %s", name, type(exc).__name__)
        except Exception:
            log.exception("%s failed; it runs again in %.1f s", name, interval_s)


def _settle(services: Services) -> None:
    """Load the scheduler's index, then move everything alive into the collector's permanent
    generation (``gc.freeze``): the index of a large fleet is hundreds of thousands of
    long-lived objects, and every full collection walking them stalled all requests of the
    process for 100+ ms (the p99 of ``benchmarks/http_boot.py``). A database that is down
    leaves the index to the first request."""
    try:
        services.instances.scheduler.load()
    except errors.DATABASE_DOWN as exc:
        log.warning("index not loaded at start, database unavailable: %s", type(exc).__name__)
    gc.freeze()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document with our error contract: 400 (not 422) and an error document."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        document = ErrorDocument.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(document.pop("$defs", {}))
        components["ErrorDocument"] = document
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                responses["400"] = _ERROR_RESPONSE
                responses["default"] = _ERROR_RESPONSE
        app.openapi_schema = schema
    return app.openapi_schema


def app_from_env() -> FastAPI:
    """The app of one server worker, from ``PCIFLEET_*`` variables (``uvicorn --factory``)."""
    settings = settings_from_env(os.environ)
    services = build_services(settings)
    mode = os.environ.get(ENV_AUTH_MODE, AuthMode.TOKENS)
    slots = services.settings.request_threads
    table = table_from_env(os.environ)
    balance = None if table is None else ConnectionBalance(table)
    return create_app(
        services, auth_mode=mode, reap_heartbeats=True, request_slots=slots, balance=balance
    )
