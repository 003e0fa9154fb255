"""At most N HTTP requests of one serving process run at once; the others wait in line.

A plain FastAPI request crosses into the thread pool up to three times: its sync
dependencies, the handler, then the validation of its response (the route table now crosses
once, :func:`~pcifleet.control.api.routes.in_one_hop`, but an area's own routes may not).
Limiting the thread pool itself (anyio's default limiter) therefore queued each request
several times: a boot whose handler had finished waited for the handlers of every request
that arrived meanwhile before its response could be validated and sent
(``benchmarks/http_boot.py``: the responses of a process went out in bursts, and the latency
doubled). :class:`RequestSlots` holds a slot for the whole request instead, so a request that
started runs to its response, and the next one starts after it, in arrival order.

Why one slot by default (``Settings.request_threads``): claims are CPU-bound Python; two in
one process only interleave on the interpreter lock and both finish later. Scale with
``--workers`` or more servers.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send


class RequestSlots:
    """ASGI middleware: ``slots`` HTTP requests at once, first come first served (anyio's
    semaphore is fair); lifespan and other scopes pass through."""

    def __init__(self, app: ASGIApp, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"request slots must be at least 1, got {slots}")
        self.app = app
        self.slots = slots
        self._free: anyio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._free is None:  # made in the serving event loop, on the first request
            self._free = anyio.Semaphore(self.slots, fast_acquire=True)
        async with self._free:
            await self.app(scope, receive, send)
