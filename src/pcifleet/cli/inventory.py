"""``pcifleet hosts ...`` and ``pcifleet devices ...``: the fleet as the controller sees it."""

from __future__ import annotations

from typing import Annotated

import typer

from pcifleet.cli.connect import DEFAULT_URL, AsJson, Token, Url, session
from pcifleet.cli.output import Column, Output
from pcifleet.control.api.schemas.devices import DeviceOut
from pcifleet.control.api.schemas.hosts import CellIO, HostDetailOut, HostSummaryOut, PoolOut

hosts_app = typer.Typer(
    name="hosts", help="Hypervisor hosts and their inventory.", no_args_is_help=True
)
devices_app = typer.Typer(
    name="devices", help="PCI devices across the fleet.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(hosts_app)
    app.add_typer(devices_app)


def _in_use(host: HostSummaryOut) -> int:
    return sum(n for state, n in host.devices_by_state.items() if state in ("claimed", "allocated"))


def _time(value: object) -> str:
    return "-" if value is None else str(value).replace("T", " ")[:19]


def _ranges(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5``."""
    spans: list[str] = []
    for cpu in sorted(cpus):
        if spans and spans[-1].split("-")[-1] == str(cpu - 1):
            spans[-1] = f"{spans[-1].split('-')[0]}-{cpu}"
        else:
            spans.append(str(cpu))
    return ",".join(spans) or "-"


HOST_COLUMNS = (
    Column("Name", lambda h: h.name, no_wrap=True),
    Column("State", lambda h: h.state),
    Column("Schedulable", lambda h: h.schedulable),
    Column("Devices", lambda h: h.device_count, "right"),
    Column("Available", lambda h: h.devices_by_state.get("available", 0), "right"),
    Column("In use", _in_use, "right"),
    Column("Vanished", lambda h: h.vanished, "right"),
    Column("Last heartbeat", lambda h: _time(h.last_heartbeat)),
)
HOST_FIELDS = (
    Column("name", lambda h: h.name),
    Column("id", lambda h: h.id),
    Column("state", lambda h: h.state),
    Column("schedulable", lambda h: h.schedulable),
    Column(
        "disabled", lambda h: f"yes: {h.disabled_reason or 'no reason'}" if h.disabled else "no"
    ),
    Column("generation", lambda h: h.generation),
    Column("inventory generation", lambda h: h.inventory_generation),
    Column("last heartbeat", lambda h: _time(h.last_heartbeat)),
    Column("last report", lambda h: _time(h.last_report)),
    Column("cpu allocation ratio", lambda h: h.cpu_allocation_ratio),
)
CELL_COLUMNS = (
    Column("NUMA node", lambda c: c.id, "right"),
    Column("Socket", lambda c: c.socket, "right"),
    Column("CPUs", lambda c: _ranges(c.cpus)),
    Column("Memory MiB", lambda c: c.memory_mb, "right"),
    Column(
        "Huge pages", lambda c: [f"{p.total}x{p.size_kb}kB ({p.free} free)" for p in c.hugepages]
    ),
)
POOL_COLUMNS = (
    Column("Vendor:Product", lambda p: f"{p.vendor_id}:{p.product_id}"),
    Column("Type", lambda p: p.dev_type),
    Column("NUMA", lambda p: p.numa_node, "right"),
    Column("Parent PF", lambda p: p.parent),
    Column("Tags", lambda p: p.tags),
    Column("Free", lambda p: p.free, "right"),
    Column("Total", lambda p: p.total, "right"),
)
DEVICE_COLUMNS = (
    Column("ID", lambda d: d.id, no_wrap=True),
    Column("Host", lambda d: d.host),
    Column("Address", lambda d: d.address, no_wrap=True),
    Column("Type", lambda d: d.dev_type),
    Column("Vendor:Product", lambda d: f"{d.vendor_id}:{d.product_id}"),
    Column("NUMA", lambda d: d.numa_node, "right"),
    Column("Parent PF", lambda d: d.parent),
    Column("Physnet", lambda d: d.tags.get("physical_network")),
    Column("State", lambda d: f"{d.state.value}{' (vanished)' if d.vanished else ''}"),
    Column("Instance", lambda d: d.instance_id),
)
DEVICE_FIELDS = (
    Column("id", lambda d: d.id),
    Column("host", lambda d: d.host),
    Column("address", lambda d: d.address),
    Column("type", lambda d: d.dev_type),
    Column("vendor:product", lambda d: f"{d.vendor_id}:{d.product_id}"),
    Column("name", lambda d: d.label),
    Column("class", lambda d: d.class_code),
    Column("numa node", lambda d: d.numa_node),
    Column("parent PF", lambda d: d.parent),
    Column("VF index", lambda d: d.vf_index),
    Column("driver", lambda d: d.driver),
    Column("netdevs", lambda d: d.netdevs),
    Column("tags", lambda d: d.tags),
    Column("state", lambda d: d.state),
    Column("instance", lambda d: d.instance_id),
    Column("vanished", lambda d: d.vanished),
)


def render_host(out: Output, host: HostDetailOut, *, devices: bool = True) -> None:
    out.detail(host, HOST_FIELDS, title=f"Host {host.name}")
    cells: list[CellIO] = host.cells
    pools: list[PoolOut] = host.pools
    out.table(cells, CELL_COLUMNS, title="NUMA cells")
    out.table(pools, POOL_COLUMNS, title="Pools")
    if devices:
        out.table(host.devices, DEVICE_COLUMNS, title="Devices")


@hosts_app.command("list")
def list_hosts(
    state: Annotated[str | None, typer.Option(help="up or down")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Every host with its device counts."""
    with session(url, token, as_json) as (client, out):
        out.table(client.list_hosts(state), HOST_COLUMNS)


@hosts_app.command("show")
def show_host(
    host: Annotated[str, typer.Argument(help="Host name or id.")],
    devices: Annotated[
        bool, typer.Option("--devices/--no-devices", help="List every device.")
    ] = True,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One host: NUMA cells, pools and devices."""
    with session(url, token, as_json) as (client, out):
        detail = client.show_host(host)
        if out.as_json:
            out.json(detail)
        else:
            render_host(out, detail, devices=devices)


@hosts_app.command("disable")
def disable_host(
    host: Annotated[str, typer.Argument(help="Host name or id.")],
    reason: Annotated[str | None, typer.Option(help="Why (shown to operators).")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Stop placing new guests on a host."""
    with session(url, token, as_json) as (client, out):
        updated = client.set_host_disabled(host, True, reason)
        out.done(f"host {updated.name} disabled", updated)


@hosts_app.command("enable")
def enable_host(
    host: Annotated[str, typer.Argument(help="Host name or id.")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Place new guests on a host again."""
    with session(url, token, as_json) as (client, out):
        updated = client.set_host_disabled(host, False)
        out.done(f"host {updated.name} enabled", updated)


@devices_app.command("list")
def list_devices(
    host: Annotated[str | None, typer.Option(help="Host name or id.")] = None,
    dev_type: Annotated[
        str | None, typer.Option("--type", help="type-PCI, type-PF, type-VF, vdpa")
    ] = None,
    state: Annotated[str | None, typer.Option(help="available, allocated, reserved, ...")] = None,
    vendor_id: Annotated[str | None, typer.Option(help="4 hex digits")] = None,
    product_id: Annotated[str | None, typer.Option(help="4 hex digits")] = None,
    physnet: Annotated[str | None, typer.Option("--physnet", help="Physical network tag.")] = None,
    numa_node: Annotated[int | None, typer.Option(help="NUMA node.")] = None,
    vanished: Annotated[
        bool | None, typer.Option("--vanished/--present", help="Vanished only, or present only.")
    ] = None,
    instance: Annotated[str | None, typer.Option(help="Held by this instance id.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Devices matching every filter given."""
    filters: dict[str, str | int | bool | None] = {
        "host": host,
        "type": dev_type,
        "state": state,
        "vendor_id": vendor_id,
        "product_id": product_id,
        "physical_network": physnet,
        "numa_node": numa_node,
        "vanished": vanished,
        "instance_id": instance,
        "limit": limit,
    }
    with session(url, token, as_json) as (client, out):
        out.table(client.list_devices(**filters), DEVICE_COLUMNS)


@devices_app.command("show")
def show_device(
    device_id: Annotated[str, typer.Argument(help="Device id.")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One device."""
    with session(url, token, as_json) as (client, out):
        out.detail(client.show_device(device_id), DEVICE_FIELDS, title="Device")


def _hold(device_id: str, reserve: bool, url: str, token: str | None, as_json: bool) -> None:
    with session(url, token, as_json) as (client, out):
        call = client.reserve_device if reserve else client.unreserve_device
        device: DeviceOut = call(device_id)
        out.done(f"device {device.address} on {device.host} is {device.state.value}", device)


@devices_app.command("reserve")
def reserve_device(
    device_id: Annotated[str, typer.Argument(help="Device id.")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Hold a device out of scheduling."""
    _hold(device_id, True, url, token, as_json)


@devices_app.command("unreserve")
def unreserve_device(
    device_id: Annotated[str, typer.Argument(help="Device id.")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Give a reserved device back to scheduling."""
    _hold(device_id, False, url, token, as_json)
