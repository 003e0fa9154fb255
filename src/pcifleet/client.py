"""The one HTTP client of the controller API, used by the CLI, the agent and the demo.

The transport is the seam (as in httpx): a real socket by default, or
:class:`InProcessTransport` to call an ASGI app in the same process (tests, the demo) with no
server and no port. Failures come back as the same :mod:`pcifleet.domain.errors` classes the
controller raised, chosen by the response's stable ``code`` (falling back on the HTTP status),
so callers catch ``NotFound`` or ``ConcurrentUpdate`` whichever side of the wire they are on::

    PcifleetError (any error document; ``fields["code"]`` is the server's code)
    ├── InvalidInput / NotFound / Conflict / Forbidden / Unauthorized ... (by code or status)
    └── Unavailable   also raised when the controller cannot be reached at all
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cache
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from pcifleet.control.api.schemas.agent import DesiredStateOut
from pcifleet.control.api.schemas.devices import DeviceList, DeviceOut
from pcifleet.control.api.schemas.flavors import FlavorCreate, FlavorList, FlavorOut
from pcifleet.control.api.schemas.groups import (
    GroupCreate,
    GroupList,
    GroupOut,
    GroupUpdate,
    QuotaSet,
)
from pcifleet.control.api.schemas.health import Health
from pcifleet.control.api.schemas.hosts import (
    HostDetailOut,
    HostList,
    HostOut,
    HostRegister,
    HostSummaryOut,
    HostUpdate,
    InventoryIn,
    ReportOut,
)
from pcifleet.control.api.schemas.instances import (
    BootIn,
    ExplainIn,
    ExplainOut,
    InstanceList,
    InstanceOut,
    NicIn,
    PortIn,
)
from pcifleet.control.api.schemas.migrations import (
    MigrateIn,
    MigrateOut,
    MigrationAbortIn,
    MigrationOut,
)
from pcifleet.control.api.schemas.networks import (
    NetworkCreate,
    NetworkList,
    NetworkOut,
    PortCreate,
    PortList,
    PortOut,
)
from pcifleet.control.api.schemas.ports_attach import PortAttachIn, PortAttachOut
from pcifleet.control.api.schemas.tokens import TokenCreate, TokenCreated, TokenList, TokenOut
from pcifleet.domain import errors
from pcifleet.domain.errors import PcifleetError

#: an ASGI application (kept loose so the client does not import Starlette's types)
AsgiApp = Callable[
    [Mapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]
ModelT = TypeVar("ModelT", bound=BaseModel)

_BY_STATUS: dict[int, type[PcifleetError]] = {
    400: errors.InvalidInput,
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    503: errors.Unavailable,
}


class InProcessTransport(httpx.BaseTransport):
    """A synchronous transport that runs an ASGI app in this process.

    httpx's ``ASGITransport`` is async only; the CLI and the agent are synchronous, so each
    request is handed to an asyncio event loop running in a daemon helper thread (started on
    first use, stopped by :meth:`close` or when the transport is garbage collected). A daemon
    thread never keeps the interpreter alive, and the caller may itself run inside an event
    loop.
    """

    def __init__(self, app: AsgiApp) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finalizer: Callable[[], object] | None = None
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="pcifleet-in-process", daemon=True
                )
                thread.start()
                self._loop = loop
                self._finalizer = weakref.finalize(self, _stop_loop, loop, thread)
            return self._loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        future = asyncio.run_coroutine_threadsafe(self._send(request), self._ensure_loop())
        return future.result()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        async_request = httpx.Request(
            request.method, request.url, headers=request.headers, content=body
        )
        response = await self._asgi.handle_async_request(async_request)
        content = await response.aread()
        await response.aclose()
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def close(self) -> None:
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._loop = None
            self._finalizer = None


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    if not thread.is_alive():
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


@cache
def _by_code() -> dict[str, type[PcifleetError]]:
    found: dict[str, type[PcifleetError]] = {}
    stack: list[type[PcifleetError]] = [PcifleetError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return found


def error_from_response(response: httpx.Response) -> PcifleetError:
    """Rebuild the server's error from its error document (or from the status alone)."""
    code, detail, meta = None, response.reason_phrase or f"HTTP {response.status_code}", {}
    try:
        first = response.json()["errors"][0]
        code, detail = str(first["code"]), str(first["detail"])
        meta = {k: v for k, v in dict(first.get("meta") or {}).items() if k != "detail"}
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    cls = _by_code().get(code or "") or _BY_STATUS.get(response.status_code, PcifleetError)
    meta.update(code=code or cls.code, status=response.status_code)
    return cls.rendered(detail, **meta)


class BaseClient:
    """Request plumbing: auth header, JSON in and out, errors decoded; no resource knowledge."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "pcifleet-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, transport=transport, timeout=timeout
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body (None for 204); raise on errors."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, json=json, params=clean or None)
        except httpx.TransportError as exc:
            raise errors.Unavailable(
                f"cannot reach the controller at {self.base_url}: {exc or type(exc).__name__}"
            ) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _get(self, model: type[ModelT], path: str, **params: Any) -> ModelT:
        return model.model_validate(self.request("GET", path, params=params))

    def _send(self, model: type[ModelT], method: str, path: str, body: BaseModel | None) -> ModelT:
        payload = None if body is None else body.model_dump(mode="json", exclude_unset=True)
        return model.model_validate(self.request(method, path, json=payload))


def _seg(value: str) -> str:
    """One path segment, escaped (names may hold characters that mean something in URLs)."""
    return quote(value, safe="")


class PcifleetClient(BaseClient):
    """Typed methods, one per API operation; responses are the API's own schema models."""

    @classmethod
    def in_process(cls, app: AsgiApp, token: str | None = None) -> PcifleetClient:
        """A client of ``app`` running in this process (no server, no port)."""
        return cls("http://pcifleet.in-process", token, transport=InProcessTransport(app))

    def health(self) -> Health:
        return self._get(Health, "/v1/health")

    # -- hosts ----------------------------------------------------------------------------

    def list_hosts(self, state: str | None = None) -> list[HostSummaryOut]:
        return self._get(HostList, "/v1/hosts", state=state).hosts

    def show_host(self, host: str) -> HostDetailOut:
        return self._get(HostDetailOut, f"/v1/hosts/{_seg(host)}")

    def register_host(self, name: str, hypervisor_uri: str | None = None) -> HostOut:
        """Register ``name`` (idempotent); ``hypervisor_uri`` is where migrations reach it."""
        body = HostRegister(name=name, hypervisor_uri=hypervisor_uri)
        return self._send(HostOut, "POST", "/v1/hosts", body)

    def report_inventory(self, host: str, inventory: InventoryIn) -> ReportOut:
        """Replace the host's inventory; ConcurrentUpdate when ``inventory.generation`` is stale."""
        return self._send(ReportOut, "PUT", f"/v1/hosts/{_seg(host)}/inventory", inventory)

    def heartbeat(self, host: str) -> HostOut:
        return self._send(HostOut, "POST", f"/v1/hosts/{_seg(host)}/heartbeat", None)

    def desired_state(self, host: str) -> DesiredStateOut:
        """The live instances placed on ``host`` and their devices (what its agent applies)."""
        return self._get(DesiredStateOut, f"/v1/hosts/{_seg(host)}/desired")

    def set_host_disabled(self, host: str, disabled: bool, reason: str | None = None) -> HostOut:
        body = HostUpdate(disabled=disabled, reason=reason)
        return self._send(HostOut, "PATCH", f"/v1/hosts/{_seg(host)}", body)

    # -- devices --------------------------------------------------------------------------

    def list_devices(self, **filters: str | int | bool | None) -> list[DeviceOut]:
        """Filters: host, type, state, vendor_id, product_id, physical_network, numa_node,
        vanished, instance_id, limit, offset (None: any)."""
        return self._get(DeviceList, "/v1/devices", **filters).devices

    def show_device(self, device_id: str) -> DeviceOut:
        return self._get(DeviceOut, f"/v1/devices/{_seg(device_id)}")

    def reserve_device(self, device_id: str) -> DeviceOut:
        return self._send(DeviceOut, "POST", f"/v1/devices/{_seg(device_id)}/reserve", None)

    def unreserve_device(self, device_id: str) -> DeviceOut:
        return self._send(DeviceOut, "POST", f"/v1/devices/{_seg(device_id)}/unreserve", None)

    # -- groups ---------------------------------------------------------------------------

    def list_groups(self, project: str | None = None) -> list[GroupOut]:
        return self._get(GroupList, "/v1/groups", project=project).groups

    def show_group(self, name: str) -> GroupOut:
        return self._get(GroupOut, f"/v1/groups/{_seg(name)}")

    def create_group(self, group: GroupCreate) -> GroupOut:
        return self._send(GroupOut, "POST", "/v1/groups", group)

    def update_group(self, name: str, changes: GroupUpdate) -> GroupOut:
        return self._send(GroupOut, "PATCH", f"/v1/groups/{_seg(name)}", changes)

    def delete_group(self, name: str) -> None:
        self.request("DELETE", f"/v1/groups/{_seg(name)}")

    def set_group_quota(self, name: str, project: str, limit: int) -> GroupOut:
        path = f"/v1/groups/{_seg(name)}/quotas/{_seg(project)}"
        return self._send(GroupOut, "PUT", path, QuotaSet(limit=limit))

    def delete_group_quota(self, name: str, project: str) -> GroupOut:
        path = f"/v1/groups/{_seg(name)}/quotas/{_seg(project)}"
        return self._send(GroupOut, "DELETE", path, None)

    # -- flavors --------------------------------------------------------------------------

    def list_flavors(self) -> list[FlavorOut]:
        return self._get(FlavorList, "/v1/flavors").flavors

    def show_flavor(self, name: str) -> FlavorOut:
        return self._get(FlavorOut, f"/v1/flavors/{_seg(name)}")

    def create_flavor(self, flavor: FlavorCreate) -> FlavorOut:
        return self._send(FlavorOut, "POST", "/v1/flavors", flavor)

    def delete_flavor(self, name: str) -> None:
        self.request("DELETE", f"/v1/flavors/{_seg(name)}")

    # -- instances ------------------------------------------------------------------------

    def boot(
        self,
        name: str,
        flavor: str,
        *,
        project: str | None = None,
        ports: Sequence[PortIn] = (),
        nics: Sequence[NicIn] = (),
    ) -> InstanceOut:
        """Boot; an instance that cannot be placed comes back in state ``error`` with a fault."""
        body = BootIn(name=name, flavor=flavor, project=project, ports=list(ports))
        if nics:
            body = body.model_copy(update={"nics": list(nics)})
        return self._send(InstanceOut, "POST", "/v1/instances", body)

    def list_instances(
        self, *, project: str | None = None, include_deleted: bool = False
    ) -> list[InstanceOut]:
        params: dict[str, Any] = {"project": project}
        if include_deleted:
            params["include_deleted"] = "true"
        return self._get(InstanceList, "/v1/instances", **params).instances

    def show_instance(self, instance_id: str) -> InstanceOut:
        return self._get(InstanceOut, f"/v1/instances/{_seg(instance_id)}")

    def delete_instance(self, instance_id: str) -> InstanceOut:
        return self._send(InstanceOut, "DELETE", f"/v1/instances/{_seg(instance_id)}", None)

    def explain(
        self,
        flavor: str,
        *,
        project: str | None = None,
        ports: Sequence[PortIn] = (),
        examples: int = 3,
    ) -> ExplainOut:
        """A dry-run boot: the host it would get and every host's outcome; claims nothing."""
        body = ExplainIn(flavor=flavor, project=project, ports=list(ports), examples=examples)
        return self._send(ExplainOut, "POST", "/v1/instances/explain", body)

    # -- networks and ports ---------------------------------------------------------------

    def list_networks(self) -> list[NetworkOut]:
        return self._get(NetworkList, "/v1/networks").networks

    def show_network(self, network: str) -> NetworkOut:
        return self._get(NetworkOut, f"/v1/networks/{_seg(network)}")

    def create_network(self, network: NetworkCreate) -> NetworkOut:
        return self._send(NetworkOut, "POST", "/v1/networks", network)

    def delete_network(self, network: str) -> None:
        self.request("DELETE", f"/v1/networks/{_seg(network)}")

    def list_ports(
        self, *, network: str | None = None, instance: str | None = None
    ) -> list[PortOut]:
        return self._get(PortList, "/v1/ports", network=network, instance=instance).ports

    def show_port(self, port_id: str) -> PortOut:
        return self._get(PortOut, f"/v1/ports/{_seg(port_id)}")

    def create_port(self, port: PortCreate) -> PortOut:
        return self._send(PortOut, "POST", "/v1/ports", port)

    def delete_port(self, port_id: str) -> None:
        self.request("DELETE", f"/v1/ports/{_seg(port_id)}")

    def attach_port(
        self, instance_id: str, *, port: str | None = None, nic: NicIn | None = None
    ) -> PortAttachOut:
        """Attach an unbound port, or a new port on ``nic.net``, to a running instance."""
        body = PortAttachIn(port=port, nic=nic)
        path = f"/v1/instances/{_seg(instance_id)}/ports"
        return self._send(PortAttachOut, "POST", path, body)

    def detach_port(self, instance_id: str, port_id: str) -> PortAttachOut:
        """Free the port's device and unbind it (the port stays, unbound)."""
        path = f"/v1/instances/{_seg(instance_id)}/ports/{_seg(port_id)}"
        return self._send(PortAttachOut, "DELETE", path, None)

    # -- live migration -------------------------------------------------------------------

    def migrate(
        self, instance_id: str, *, host: str | None = None, dry_run: bool = False
    ) -> MigrateOut:
        """The plan, and unless ``dry_run`` the destination claimed and the migration started."""
        body = MigrateIn(host=host, dry_run=dry_run)
        path = f"/v1/instances/{_seg(instance_id)}/migrate"
        return MigrateOut.model_validate(
            self.request("POST", path, json=body.model_dump(mode="json"))
        )

    def show_migration(self, instance_id: str) -> MigrationOut:
        return self._get(MigrationOut, f"/v1/instances/{_seg(instance_id)}/migration")

    def complete_migration(self, instance_id: str) -> MigrationOut:
        path = f"/v1/instances/{_seg(instance_id)}/migration/complete"
        return self._send(MigrationOut, "POST", path, None)

    def abort_migration(self, instance_id: str, reason: str) -> MigrationOut:
        path = f"/v1/instances/{_seg(instance_id)}/migration/abort"
        return self._send(MigrationOut, "POST", path, MigrationAbortIn(reason=reason))

    # -- tokens ---------------------------------------------------------------------------

    def create_token(
        self,
        role: str,
        *,
        project: str | None = None,
        host: str | None = None,
        name: str | None = None,
    ) -> TokenCreated:
        body = TokenCreate.model_validate(
            {"role": role, "project": project, "host": host, "name": name}
        )
        return self._send(TokenCreated, "POST", "/v1/tokens", body)

    def list_tokens(self) -> list[TokenOut]:
        return self._get(TokenList, "/v1/tokens").tokens

    def revoke_token(self, token_id: str) -> TokenOut:
        return self._send(TokenOut, "DELETE", f"/v1/tokens/{_seg(token_id)}", None)
