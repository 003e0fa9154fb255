"""``pcifleet instance xml ID [--device ADDRESS]``: the libvirt domain of a placed instance.

The instance (host cells, pinned CPUs, huge pages, devices per request) and the details of its
devices (tags, type) come from the controller through the client; the XML is what the agent
would define, rendered by :mod:`pcifleet.host.libvirt`. Flavor devices become ``<hostdev>``
(``managed`` from the device's tags); devices claimed for a port become a direct VF
interface, or a whole-function ``<hostdev>`` for a PF or plain PCI device. With ``--device`` only
that device's fragment is printed (what hot plug would attach).

The domain is named ``pcifleet-<instance id>``: instance names are only unique per project,
and libvirt refuses two domains with one name on a host.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from pcifleet.cli.connect import DEFAULT_URL, ClientFactory, Token, Url
from pcifleet.cli.output import Output
from pcifleet.client import PcifleetClient
from pcifleet.control.api.schemas.devices import DeviceOut
from pcifleet.control.api.schemas.instances import CellOut, InstanceOut
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import Conflict, NotFound, PcifleetError
from pcifleet.domain.placement import CellPlacement, Placement
from pcifleet.domain.vnic import VnicType
from pcifleet.host.libvirt import (
    DomainSpec,
    GuestDevice,
    GuestPort,
    render_device,
    render_domain,
    to_string,
)

Device = Annotated[
    str | None,
    typer.Option("--device", help="Print only this device's fragment (PCI address)."),
]
#: device types a port gets as a whole function rather than as a VF interface
_WHOLE_FUNCTION = frozenset({DeviceType.PF, DeviceType.PCI})


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name="instance", help="One instance's hypervisor view.", no_args_is_help=True
    )
    group.command("xml")(xml_command)
    app.add_typer(group, name="instance")


def domain_name(instance_id: str) -> str:
    return f"pcifleet-{instance_id}"


def _cell(cell: CellOut) -> CellPlacement:
    return CellPlacement(
        guest_node=cell.guest_node,
        host_cell=cell.host_cell,
        vcpus=cell.vcpus,
        memory_mb=cell.memory_mb,
        pinned_cpus=frozenset(cell.pinned_cpus),
        hugepage_size_kb=cell.hugepage_size_kb,
        hugepages=cell.hugepages,
    )


def placement_of(vm: InstanceOut) -> Placement:
    """The scheduler's placement as the API reports it."""
    if vm.host is None:
        raise Conflict(f"instance {vm.id} is {vm.state} and has no placement", field="state")
    cells = tuple(_cell(c) for c in vm.cells)
    return Placement(
        instance_id=vm.id,
        cells=cells,
        devices=tuple(tuple(PciAddress.parse(a) for a in r.devices) for r in vm.requests),
        floating_vcpus=0 if cells else vm.vcpus,
        floating_memory_mb=0 if cells else vm.memory_mb,
    )


def guest_item(requester_kind: str, device: DeviceOut) -> GuestDevice | GuestPort:
    """A flavor device as a hostdev; a port's device as a direct VF or a whole function."""
    address = PciAddress.parse(device.address)
    if requester_kind != "port":
        return GuestDevice.from_tags(address, device.tags)
    managed = device.tags.get("managed", "true").strip().lower() == "true"
    vnic = VnicType.DIRECT_PHYSICAL if device.dev_type in _WHOLE_FUNCTION else VnicType.DIRECT
    return GuestPort(vnic, address=address, managed=managed)


def guest_items(
    vm: InstanceOut, devices: dict[str, DeviceOut]
) -> dict[str, GuestDevice | GuestPort]:
    """Every device of the instance by address, in request order."""
    items: dict[str, GuestDevice | GuestPort] = {}
    for request in vm.requests:
        for address in request.devices:
            canonical = str(PciAddress.parse(address))
            device = devices.get(canonical)
            if device is None:
                raise NotFound(f"device {address} of instance {vm.id} is not in the inventory")
            items[canonical] = guest_item(request.requester_kind, device)
    return items


def domain_spec(vm: InstanceOut, items: dict[str, GuestDevice | GuestPort]) -> DomainSpec:
    return DomainSpec.from_placement(
        domain_name(vm.id),
        UUID(vm.id),
        placement_of(vm),
        devices=tuple(i for i in items.values() if isinstance(i, GuestDevice)),
        ports=tuple(i for i in items.values() if isinstance(i, GuestPort)),
    )


def render_xml(client: PcifleetClient, instance_id: str, device: str | None) -> str:
    vm = client.show_instance(instance_id)
    found = client.list_devices(instance_id=vm.id)
    by_address = {str(PciAddress.parse(d.address)): d for d in found}
    items = guest_items(vm, by_address)
    if device is None:
        return to_string(render_domain(domain_spec(vm, items)))
    item = items.get(str(PciAddress.parse(device)))
    if item is None:
        raise NotFound(f"instance {vm.id} has no device {device}", field="device")
    return to_string(render_device(item))


def xml_command(
    ctx: typer.Context,
    instance_id: Annotated[str, typer.Argument(help="Instance id.")],
    device: Device = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Print the libvirt domain XML of an instance, or one device's fragment."""
    found = ctx.find_object(ClientFactory)
    factory = found if isinstance(found, ClientFactory) else ClientFactory(PcifleetClient)
    out = Output()
    try:
        with factory.make(url, token) as client:
            text = render_xml(client, instance_id, device)
    except PcifleetError as exc:
        out.fail(exc)
    typer.echo(text, nl=False)
