"""Request slots: a request that started runs to its response before the next one starts.

A sync FastAPI request enters the thread pool for its dependencies, its handler and the
validation of its response; each step is logged here, from concurrent requests over a real
ASGI stack (httpx's ASGI transport).
"""

# no ``from __future__ import annotations``: FastAPI resolves the endpoint's annotations, and
# the test's endpoint and dependency are local functions

import asyncio
import threading
import time
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel, field_validator

from pcifleet.control.api.app import create_app
from pcifleet.control.api.slots import RequestSlots
from pcifleet.control.container import Services


class _Log:
    def __init__(self) -> None:
        self.steps: list[tuple[str, int]] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def step(self, name: str, number: int) -> None:
        with self._lock:
            self.steps.append((name, number))


def _app(log: _Log, slots: int | None) -> FastAPI:
    class Out(BaseModel):
        number: int

        @field_validator("number")
        @classmethod
        def logged(cls, value: int) -> int:
            log.step("validate", value)
            return value

    def dependency(number: int) -> int:
        log.step("dependency", number)
        return number

    app = FastAPI()

    @app.get("/work/{number}", response_model=Out)
    def work(number: Annotated[int, Depends(dependency)]) -> dict[str, int]:
        with log._lock:
            log.running += 1
            log.most = max(log.most, log.running)
        log.step("handler", number)
        time.sleep(0.01)
        with log._lock:
            log.running -= 1
        return {"number": number}

    if slots is not None:
        app.add_middleware(RequestSlots, slots=slots)
    return app


def _fire(app: FastAPI, count: int) -> list[int]:
    """``count`` concurrent requests, each sent a moment after the previous one."""

    async def one(client: httpx.AsyncClient, number: int) -> int:
        await asyncio.sleep(number * 0.001)
        response = await client.get(f"/work/{number}")
        assert response.status_code == 200
        number_back: int = response.json()["number"]
        return number_back

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return list(await asyncio.gather(*(one(client, n) for n in range(count))))

    return asyncio.run(run())


def test_one_slot_runs_each_request_whole_in_arrival_order() -> None:
    log = _Log()
    assert _fire(_app(log, slots=1), 6) == list(range(6))
    expected = [(step, n) for n in range(6) for step in ("dependency", "handler", "validate")]
    assert log.steps == expected
    assert log.most == 1


def test_without_slots_the_steps_of_concurrent_requests_interleave() -> None:
    # what the slots prevent: requests overlap, a response waits behind later handlers
    log = _Log()
    _fire(_app(log, slots=None), 6)
    grouped = [(step, n) for n in range(6) for step in ("dependency", "handler", "validate")]
    assert sorted(log.steps) == sorted(grouped)
    assert log.steps != grouped
    assert log.most > 1


def test_two_slots_run_two_requests_at_most() -> None:
    log = _Log()
    assert _fire(_app(log, slots=2), 8) == list(range(8))
    assert log.most == 2


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError, match="request slots must be at least 1, got 0"):
        RequestSlots(FastAPI(), 0)


def test_a_served_app_has_slots_and_an_embedded_one_has_none(services: Services) -> None:
    def slots(app: FastAPI) -> list[object]:
        return [m.kwargs["slots"] for m in app.user_middleware if m.cls is RequestSlots]

    assert slots(create_app(services, request_slots=3)) == [3]
    assert slots(create_app(services)) == []
