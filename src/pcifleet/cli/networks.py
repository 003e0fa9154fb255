"""``pcifleet networks|ports ...`` and ``pcifleet attach|detach``: SR-IOV networking.

Segments are given as ``flat:PHYSNET``, ``vlan:PHYSNET[:VID]`` or ``vxlan[:VNI]`` (ids left
out are allocated from the controller's ranges). Port tables show the binding as Nova and
Neutron exchange it (host, vif type, VLAN, ``pci_slot``, ``vf_num``, ``physical_network``)
and the QoS notes (a kbit/s rate rounded to the VF's whole Mbit/s). ``--nic`` takes
``net=NAME[,vnic-type=TYPE]`` or ``port=ID``, as ``pcifleet boot --nic`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from pcifleet.cli.connect import DEFAULT_URL, AsJson, Token, Url, session
from pcifleet.cli.output import Column, Output
from pcifleet.control.api.schemas.instances import NicIn
from pcifleet.control.api.schemas.networks import (
    NetworkCreate,
    PortCreate,
    PortOut,
    QosIn,
    SegmentIn,
)
from pcifleet.control.api.schemas.ports_attach import PortAttachOut
from pcifleet.domain.errors import InvalidInput
from pcifleet.domain.vnic import VnicType
from pcifleet.network.segments import NetworkType

networks_app = typer.Typer(
    name="networks", help="Networks and their segments (flat, vlan, vxlan).", no_args_is_help=True
)
ports_app = typer.Typer(
    name="ports", help="Ports: vnic type, VF settings, QoS and binding.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(networks_app)
    app.add_typer(ports_app)
    app.command("attach")(attach_command)
    app.command("detach")(detach_command)


# --- parsing options ---------------------------------------------------------------------------


def parse_segment(text: str) -> SegmentIn:
    """``flat:PHYSNET``, ``vlan:PHYSNET[:VID]`` or ``vxlan[:VNI]``."""
    kind, _, rest = text.strip().partition(":")
    try:
        network_type = NetworkType(kind.lower())
    except ValueError:
        raise _bad_segment(text, "the type is one of flat, vlan, vxlan") from None
    parts = rest.split(":") if rest else []
    if network_type is NetworkType.VXLAN:
        if len(parts) > 1:
            raise _bad_segment(text, "vxlan takes at most a VNI: vxlan[:VNI]")
        return SegmentIn(network_type=network_type, segmentation_id=_id(text, parts, 0))
    if not parts or not parts[0] or len(parts) > 2:
        raise _bad_segment(text, f"expected {network_type}:PHYSNET" + ("[:VID]" * (kind == "vlan")))
    return SegmentIn(
        network_type=network_type,
        physical_network=parts[0],
        segmentation_id=_id(text, parts, 1),
    )


def _id(text: str, parts: list[str], index: int) -> int | None:
    if len(parts) <= index:
        return None
    try:
        return int(parts[index])
    except ValueError:
        raise _bad_segment(text, f"{parts[index]!r} is not an integer id") from None


def _bad_segment(text: str, rule: str) -> InvalidInput:
    return InvalidInput(f"--segment {text!r}: {rule}", field="--segment", rule="format")


def parse_nic(text: str) -> NicIn:
    """``net=NAME[,vnic-type=TYPE]`` or ``port=ID`` (Nova's ``--nic``)."""
    values: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not value or key not in ("net", "port", "vnic-type") or key in values:
            raise _bad_nic(text, "comma-separated net=NAME, port=ID, vnic-type=TYPE, each once")
        values[key] = value
    if ("net" in values) == ("port" in values):
        raise _bad_nic(text, "exactly one of net= or port=")
    if "port" in values and "vnic-type" in values:
        raise _bad_nic(text, "vnic-type= goes with net= (a port has its own vnic type)")
    vnic = values.get("vnic-type", VnicType.NORMAL.value)
    try:
        vnic_type = VnicType(vnic)
    except ValueError:
        accepted = ", ".join(v.value for v in VnicType)
        raise _bad_nic(text, f"vnic-type {vnic!r} is not one of {accepted}") from None
    return NicIn(net=values.get("net"), port=values.get("port"), vnic_type=vnic_type)


def _bad_nic(text: str, rule: str) -> InvalidInput:
    return InvalidInput(f"--nic {text!r}: {rule}", field="--nic", rule="format")


# --- tables ------------------------------------------------------------------------------------


def _segments(network: object) -> list[str]:
    found = []
    for s in getattr(network, "segments", ()):
        text = s.network_type
        if s.physical_network:
            text += f":{s.physical_network}"
        if s.segmentation_id is not None:
            text += f":{s.segmentation_id}"
        found.append(text)
    return found


NETWORK_COLUMNS = (
    Column("ID", lambda n: n.id, no_wrap=True),
    Column("Name", lambda n: n.name),
    Column("Project", lambda n: n.project),
    Column("Shared", lambda n: n.shared),
    Column("Segments", _segments),
)


def _profile(port: PortOut, key: str) -> object:
    return None if port.binding is None else port.binding.profile.get(key)


def _vlan(port: PortOut) -> object:
    return None if port.binding is None else port.binding.vif_details.get("vlan")


def _qos(port: PortOut) -> str | None:
    if port.vf is None or (port.vf.max_tx_rate_mbps is None and port.vf.min_tx_rate_mbps is None):
        return None
    return f"max {port.vf.max_tx_rate_mbps or '-'} / min {port.vf.min_tx_rate_mbps or '-'} Mbit/s"


PORT_COLUMNS = (
    Column("ID", lambda p: p.id, no_wrap=True),
    Column("vnic", lambda p: p.vnic_type),
    Column("MAC", lambda p: p.mac_address, no_wrap=True),
    Column("Instance", lambda p: p.instance_id),
    Column("Host", lambda p: p.binding.host if p.binding else None),
    Column("VIF", lambda p: p.vif_type),
    Column("VLAN", _vlan),
    Column("pci_slot", lambda p: _profile(p, "pci_slot"), no_wrap=True),
    Column("vf_num", lambda p: _profile(p, "vf_num")),
    Column("physnet", lambda p: _profile(p, "physical_network")),
    Column("QoS", _qos),
)
PORT_FIELDS = (
    Column("id", lambda p: p.id),
    Column("name", lambda p: p.name),
    Column("project", lambda p: p.project),
    Column("network", lambda p: p.network_id),
    Column("mac address", lambda p: p.mac_address),
    Column("vnic type", lambda p: p.vnic_type),
    Column("trusted", lambda p: p.trusted),
    Column("port security", lambda p: p.port_security),
    Column("propagate uplink", lambda p: p.propagate_uplink_status),
    Column("admin state up", lambda p: p.admin_state_up),
    Column("qos kbit/s", lambda p: {"max": p.qos_max_kbps, "min": p.qos_min_kbps}),
    Column("vf", lambda p: None if p.vf is None else p.vf.model_dump()),
    Column("instance", lambda p: p.instance_id),
    Column("vif type", lambda p: p.vif_type),
    Column("binding host", lambda p: p.binding.host if p.binding else None),
    Column("vif details", lambda p: dict(p.binding.vif_details) if p.binding else None),
    Column("binding profile", lambda p: dict(p.binding.profile) if p.binding else None),
    Column("notes", lambda p: p.notes),
)


def print_bindings(out: Output, ports: Sequence[PortOut], warnings: Sequence[str] = ()) -> None:
    """The ports of an instance with their bindings, then notes and warnings (stderr)."""
    out.console.print(out.build_table(ports, PORT_COLUMNS, title=f"{len(ports)} port(s)"))
    for port in ports:
        for note in port.notes:
            out.note(f"note: port {port.id}: {note}")
    for warning in warnings:
        out.note(f"warning: {warning}")


# --- networks ----------------------------------------------------------------------------------


@networks_app.command("list")
def list_networks(as_json: AsJson = False, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Networks of your project and the shared ones."""
    with session(url, token, as_json) as (client, out):
        out.table(client.list_networks(), NETWORK_COLUMNS)


@networks_app.command("show")
def show_network(
    network: Annotated[str, typer.Argument(help="Network name or id.")],
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """One network with its segments."""
    with session(url, token, as_json) as (client, out):
        out.detail(client.show_network(network), NETWORK_COLUMNS)


@networks_app.command("create")
def create_network(
    name: Annotated[str, typer.Argument(help="Network name.")],
    segment: Annotated[
        list[str],
        typer.Option(
            "--segment", help="flat:PHYSNET, vlan:PHYSNET[:VID] or vxlan[:VNI]; repeatable."
        ),
    ],
    shared: Annotated[bool, typer.Option("--shared", help="Visible to every project.")] = False,
    project: Annotated[str | None, typer.Option("--project", help="Owner project.")] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Create a network; VLAN ids and VNIs left out are allocated."""
    with session(url, token, as_json) as (client, out):
        body = NetworkCreate(
            name=name, segments=[parse_segment(s) for s in segment], shared=shared, project=project
        )
        out.detail(client.create_network(body), NETWORK_COLUMNS)


@networks_app.command("delete")
def delete_network(
    network: Annotated[str, typer.Argument(help="Network name or id.")],
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Delete a network without ports."""
    with session(url, token, as_json) as (client, out):
        client.delete_network(network)
        out.done(f"network {network} deleted")


# --- ports -------------------------------------------------------------------------------------


@ports_app.command("list")
def list_ports(
    network: Annotated[str | None, typer.Option("--network", help="Only this network.")] = None,
    instance: Annotated[str | None, typer.Option("--instance", help="Only this instance.")] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Ports with their bindings."""
    with session(url, token, as_json) as (client, out):
        out.table(client.list_ports(network=network, instance=instance), PORT_COLUMNS)


@ports_app.command("show")
def show_port(
    port_id: Annotated[str, typer.Argument(help="Port id.")],
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """One port: VF settings, QoS and binding."""
    with session(url, token, as_json) as (client, out):
        out.detail(client.show_port(port_id), PORT_FIELDS)


@ports_app.command("create")
def create_port(
    network: Annotated[str, typer.Option("--network", help="Network name or id.")],
    vnic_type: Annotated[VnicType, typer.Option("--vnic-type")] = VnicType.NORMAL,
    name: Annotated[str, typer.Option("--name")] = "",
    mac: Annotated[str | None, typer.Option("--mac", help="MAC address (else allocated).")] = None,
    trusted: Annotated[
        bool | None, typer.Option("--trusted/--untrusted", help="VF trust (binding profile).")
    ] = None,
    no_port_security: Annotated[
        bool, typer.Option("--no-port-security", help="Turn the VF spoof check off.")
    ] = False,
    propagate: Annotated[
        bool, typer.Option("--propagate-uplink-status", help="VF link state follows the PF.")
    ] = False,
    admin_down: Annotated[
        bool, typer.Option("--admin-state-down", help="VF link state disabled.")
    ] = False,
    max_kbps: Annotated[int | None, typer.Option("--qos-max-kbps")] = None,
    min_kbps: Annotated[int | None, typer.Option("--qos-min-kbps")] = None,
    burst_kbps: Annotated[
        int | None, typer.Option("--qos-burst-kbps", help="Refused: a VF cannot enforce bursts.")
    ] = None,
    security_group: Annotated[
        list[str] | None,
        typer.Option("--security-group", help="Refused on SR-IOV ports (no host firewall)."),
    ] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Create a port; QoS rates rounded to whole Mbit/s are noted."""
    rates = (max_kbps, min_kbps, burst_kbps)
    qos = None
    if any(r is not None for r in rates):
        qos = QosIn(max_kbps=max_kbps, min_kbps=min_kbps, max_burst_kbps=burst_kbps)
    with session(url, token, as_json) as (client, out):
        body = PortCreate(
            network=network,
            name=name,
            vnic_type=vnic_type,
            mac_address=mac,
            trusted=trusted,
            port_security=not no_port_security,
            propagate_uplink_status=propagate,
            admin_state_up=not admin_down,
            qos=qos,
            security_groups=security_group or [],
        )
        port = client.create_port(body)
        out.detail(port, PORT_FIELDS)
        for note in () if as_json else port.notes:
            out.note(f"note: {note}")


@ports_app.command("delete")
def delete_port(
    port_id: Annotated[str, typer.Argument(help="Port id.")],
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Delete an unbound port."""
    with session(url, token, as_json) as (client, out):
        client.delete_port(port_id)
        out.done(f"port {port_id} deleted")


# --- attach / detach ---------------------------------------------------------------------------


def _print_attach(out: Output, result: PortAttachOut, verb: str) -> None:
    if out.as_json:
        out.json(result)
        return
    console: Console = out.console
    console.print(f"{verb} port {result.port.id} ({escape(result.port.vnic_type)})")
    print_bindings(out, [result.port], result.warnings)


def attach_command(
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    port: Annotated[str | None, typer.Option("--port", help="An unbound port id.")] = None,
    nic: Annotated[
        str | None, typer.Option("--nic", help="net=NAME[,vnic-type=TYPE]: a new port.")
    ] = None,
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Attach a port to a running instance (its device is claimed on the instance's host)."""
    with session(url, token, as_json) as (client, out):
        if (port is None) == (nic is None):
            raise InvalidInput("give exactly one of --port or --nic", field="--port", rule="one_of")
        result = client.attach_port(
            instance_id, port=port, nic=None if nic is None else parse_nic(nic)
        )
        _print_attach(out, result, "attached")


def detach_command(
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    port_id: Annotated[str, typer.Argument(help="Port id.")],
    as_json: AsJson = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Detach a port: its device and PF/VF relatives are freed, the port stays unbound."""
    with session(url, token, as_json) as (client, out):
        result = client.detach_port(instance_id, port_id)
        _print_attach(out, result, "detached")
