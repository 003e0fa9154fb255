"""The route table: the whole API on one screen (Placement's ``ROUTE_DECLARATIONS``).

Each row is method, path, handler, success status. Handlers are plain functions in one module
per resource; they parse nothing by hand (schemas do), decide nothing (services do), and map
nothing to HTTP (the error handlers do). To add a resource, write its module and add its rows
here (instances, for example, add ``/v1/instances`` boot/list/show/delete and
``/v1/instances/explain``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Response
from starlette.concurrency import run_in_threadpool

from pcifleet.control.api.routes import (
    agent,
    devices,
    flavors,
    groups,
    health,
    hosts,
    instances,
    migrations,
    networks,
    ports_attach,
    tokens,
)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Callable[..., Any]
    status: int = 200

    @property
    def tag(self) -> str:
        return self.handler.__module__.rsplit(".", 1)[-1]


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/health", health.show),
    Route("GET", "/v1/hosts", hosts.list_hosts),
    Route("POST", "/v1/hosts", hosts.register, 201),
    Route("GET", "/v1/hosts/{host}", hosts.show),
    Route("PATCH", "/v1/hosts/{host}", hosts.update),
    Route("PUT", "/v1/hosts/{host}/inventory", hosts.report),
    Route("POST", "/v1/hosts/{host}/heartbeat", hosts.heartbeat),
    Route("GET", "/v1/hosts/{host}/desired", agent.desired),
    Route("GET", "/v1/devices", devices.list_devices),
    Route("GET", "/v1/devices/{device_id}", devices.show),
    Route("POST", "/v1/devices/{device_id}/reserve", devices.reserve),
    Route("POST", "/v1/devices/{device_id}/unreserve", devices.unreserve),
    Route("GET", "/v1/tokens", tokens.list_tokens),
    Route("POST", "/v1/tokens", tokens.create, 201),
    Route("DELETE", "/v1/tokens/{token_id}", tokens.revoke),
    Route("GET", "/v1/groups", groups.list_groups),
    Route("POST", "/v1/groups", groups.create, 201),
    Route("GET", "/v1/groups/{name}", groups.show),
    Route("PATCH", "/v1/groups/{name}", groups.update),
    Route("DELETE", "/v1/groups/{name}", groups.delete, 204),
    Route("PUT", "/v1/groups/{name}/quotas/{project}", groups.set_quota),
    Route("DELETE", "/v1/groups/{name}/quotas/{project}", groups.delete_quota),
    Route("GET", "/v1/flavors", flavors.list_flavors),
    Route("POST", "/v1/flavors", flavors.create, 201),
    Route("GET", "/v1/flavors/{name}", flavors.show),
    Route("DELETE", "/v1/flavors/{name}", flavors.delete, 204),
    Route("GET", "/v1/instances", instances.list_instances),
    Route("POST", "/v1/instances", instances.boot, 201),
    Route("POST", "/v1/instances/explain", instances.explain),
    Route("GET", "/v1/instances/{instance_id}", instances.show),
    Route("DELETE", "/v1/instances/{instance_id}", instances.delete),
    Route("POST", "/v1/instances/{instance_id}/ports", ports_attach.attach_port, 201),
    Route("DELETE", "/v1/instances/{instance_id}/ports/{port_id}", ports_attach.detach_port),
    Route("POST", "/v1/instances/{instance_id}/migrate", migrations.migrate),
    Route("GET", "/v1/instances/{instance_id}/migration", migrations.show_migration),
    Route("POST", "/v1/instances/{instance_id}/migration/complete", migrations.complete_migration),
    Route("POST", "/v1/instances/{instance_id}/migration/abort", migrations.abort_migration),
    Route("GET", "/v1/networks", networks.list_networks),
    Route("POST", "/v1/networks", networks.create_network, 201),
    Route("GET", "/v1/networks/{network}", networks.show_network),
    Route("DELETE", "/v1/networks/{network}", networks.delete_network, 204),
    Route("GET", "/v1/ports", networks.list_ports),
    Route("POST", "/v1/ports", networks.create_port, 201),
    Route("GET", "/v1/ports/{port_id}", networks.show_port),
    Route("DELETE", "/v1/ports/{port_id}", networks.delete_port, 204),
)


def install(app: FastAPI, routes: Iterable[Route] = ROUTES) -> None:
    """Add ``routes`` to ``app``; operation ids are the handlers' names, tags their modules."""
    for route in routes:
        extra: dict[str, Any] = {}
        if route.status == 204:
            extra["response_class"] = Response
        app.add_api_route(
            route.path,
            in_one_hop(route.handler),
            methods=[route.method],
            status_code=route.status,
            tags=[route.tag],
            operation_id=f"{route.tag}.{route.handler.__name__}",
            **extra,
        )


def in_one_hop(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` as an async endpoint that runs it in the thread pool: one thread hop per
    request.

    FastAPI runs a plain ``def`` endpoint in the thread pool, then validates its response in
    the thread pool again: two round trips between the event loop and a worker thread, each a
    wake-up that waits for a CPU when the machine is busy (``benchmarks/http_boot.py``). The
    wrapper keeps the handler's signature, annotations and docstring (``functools.wraps``):
    FastAPI reads parameters, response model and description from the handler itself.
    """
    if inspect.iscoroutinefunction(handler):
        return handler

    @functools.wraps(handler)
    async def endpoint(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(handler, *args, **kwargs)

    return endpoint
