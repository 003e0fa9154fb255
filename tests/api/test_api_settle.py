"""A serving app loads the scheduler's index before its first request and freezes it out of
the cyclic collector (full collections walking a large fleet's index stalled requests)."""

from __future__ import annotations

import asyncio
import gc

from api_kit import Fleet
from fastapi import FastAPI

from pcifleet.control.api.app import create_app
from pcifleet.control.container import Services


def test_a_serving_app_loads_the_index_and_freezes_it_at_start(
    services: Services, fleet: Fleet
) -> None:
    index = services.instances.scheduler.index
    assert not index.loaded
    try:
        frozen = _start(create_app(services, reap_heartbeats=True))
        assert index.loaded and len(index) == 1
        assert index.summary(fleet.host_id) is not None
        assert frozen > 0
    finally:
        gc.unfreeze()


def test_an_app_that_does_not_serve_loads_nothing_at_start(services: Services) -> None:
    assert _start(create_app(services)) == 0
    assert not services.instances.scheduler.index.loaded


def _start(app: FastAPI) -> int:
    """Run the app's start and stop as a server would; the objects frozen meanwhile."""

    async def serve() -> int:
        async with app.router.lifespan_context(app):
            return gc.get_freeze_count()

    return asyncio.run(serve())
