"""``pcifleet instance xml ID [--device ADDRESS]``: the libvirt domain of a placed instance.

The XML is rendered from the same input and with the same functions the agent uses to define
the domain: the controller's desired state of the instance's host (``GET
/v1/hosts/{host}/desired``, what the agent plugs) through :mod:`pcifleet.host.plugger`. So
ports come out as the agent defines them: ``direct`` as ``<interface type='hostdev'>`` with the
port's MAC and VLAN, ``macvtap`` as ``<interface type='direct' mode='passthrough'>`` on the VF's
netdev with MAC and VLAN, ``direct-physical`` as a ``<hostdev>`` of the PF; flavor devices as
``<hostdev>`` (``managed`` from the device's tags). The ``<metadata>`` names the instance, its
devices, ports and the VFs the agent configures, as the agent writes it (without the VFs'
pre-plug snapshots, which only the host knows).

``--device ADDRESS`` prints one fragment (what hot plug would attach): the flavor device at
that address, or the port whose claimed device (VF, or PF of a ``direct-physical`` port) it is.

The desired state is an operator's view: it needs an admin token (or the host's agent).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pcifleet.cli.connect import DEFAULT_URL, ClientFactory, Token, Url
from pcifleet.cli.output import Output
from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.agent import DesiredInstanceOut
from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import Conflict, NotFound, PcifleetError
from pcifleet.host.agent import Plugged
from pcifleet.host.libvirt import render_device, render_domain, to_string
from pcifleet.host.libvirt.devices import Element
from pcifleet.host.plugger import Item, domain_spec, guest_items, vf_binding, with_metadata

Device = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="Print only this device's fragment (PCI address; for a port, its VF or PF).",
    ),
]


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="instance", help="One instance's hypervisor view.", no_args_is_help=True
    )
    group.command("xml")(xml_command)
    app.add_typer(group, name="instance")


def desired_instance(client: PcifleetClient, instance_id: str) -> DesiredInstanceOut:
    """The instance as its host's agent receives it."""
    vm = client.show_instance(instance_id)
    if vm.host is None:
        raise Conflict(f"instance {vm.id} is {vm.state} and has no placement", field="state")
    for desired in client.desired_state(vm.host).instances:
        if desired.id == vm.id:
            return desired
    raise Conflict(
        f"instance {vm.id} is {vm.state} and not in the desired state of host {vm.host}",
        field="state",
    )


def domain_xml(desired: DesiredInstanceOut) -> Element:
    """The domain the agent defines for ``desired`` (see :meth:`HostApplier.plug`)."""
    spec = domain_spec(desired, guest_items(desired).values())
    vfs = [b for b in map(vf_binding, desired.ports) if b is not None]
    return with_metadata(render_domain(spec), Plugged.of(desired), vfs)


def items_by_address(desired: DesiredInstanceOut) -> dict[str, Item]:
    """Every device and port of the instance by the address of the device it holds (a
    port's: its VF, or its PF for ``direct-physical``)."""
    items = guest_items(desired)
    found: dict[str, Item] = {}
    for device in desired.devices:
        address = str(PciAddress.parse(device.address))
        key = device.requester if device.requester_kind == "port" else address
        if key in items:
            found[address] = items[key]
    for port in desired.ports:
        held = port.vf_address or port.pf_address
        if held is not None:
            found[str(PciAddress.parse(held))] = items[port.id]
    return found


def device_xml(desired: DesiredInstanceOut, device: str) -> Element:
    """The fragment of the device or port holding ``device`` (a PCI address)."""
    item = items_by_address(desired).get(str(PciAddress.parse(device)))
    if item is None:
        raise NotFound(f"instance {desired.id} has no device {device}", field="device")
    return render_device(item)


def render_xml(client: PcifleetClient, instance_id: str, device: str | None) -> str:
    desired = desired_instance(client, instance_id)
    if device is None:
        return to_string(domain_xml(desired))
    return to_string(device_xml(desired, device))


def xml_command(
    ctx: typer.Context,
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    device: Device = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Print the libvirt domain XML of an instance (as its agent defines it), or one
    device's or port's fragment."""
    found = ctx.find_object(ClientFactory)
    factory = found if isinstance(found, ClientFactory) else ClientFactory(PcifleetClient)
    out = Output()
    try:
        with factory.make(url, token) as client:
            text = render_xml(client, instance_id, device)
    except PcifleetError as exc:
        out.fail(exc)
    typer.echo(text, nl=False)
