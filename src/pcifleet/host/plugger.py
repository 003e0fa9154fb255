"""The agent's real applier: configure VFs, then define and start the domain; undo on failure.

Order of a plug (DESIGN §1 items 6-7):

1. build the domain from the desired instance (pure: a bad spec fails before touching the host);
2. configure each port's VF through the :class:`~pcifleet.host.vf.service.VfManager` on its PF
   (MAC, VLAN, rates, spoof check, trust, link state; the manager snapshots the VF first);
3. define the domain (rendered with :func:`~pcifleet.host.libvirt.render_domain`; macvtap ports
   are ``<interface type='direct' mode='passthrough'>`` on the VF netdev, and libvirt creates
   the macvtap link itself) and start it.

Any failure undoes what was done in reverse (domain undefined, VFs restored) and raises
:class:`~pcifleet.domain.errors.PlugFailed`, which the agent logs; the next cycle retries.
Unplug stops and undefines the domain, then releases the VFs (their snapshots are restored,
including a MAC the guest changed). :meth:`HostApplier.update` hot plugs the ports and
devices a running instance gained (VF configured first, restored if the attach fails) and
unplugs those it lost.

What is plugged is read from the hypervisor, never from memory: domains are named
``pcifleet-<instance id>`` (as ``pcifleet instance xml`` names them) and carry a
``<metadata>`` element listing the instance's name, devices, ports and the VFs configured for
them, so a restarted agent finds its instances and does not plug them twice. Each VF carries
the snapshot the VF manager took before configuring it; a restarted agent hands those back to
its manager (:meth:`~pcifleet.host.vf.service.VfManager.adopt`), so an unplug after a restart
still restores the VFs exactly (a MAC the guest changed included).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from uuid import UUID

from lxml import etree

from pcifleet.control.api.schemas.agent import (
    DesiredDeviceOut,
    DesiredInstanceOut,
    DesiredPortOut,
)
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import DeviceNotAttached, DomainNotFound, PcifleetError, PlugFailed
from pcifleet.domain.vnic import PlugKind, VnicType, vnic_info
from pcifleet.host.agent import Plugged
from pcifleet.host.hypervisor.driver import HypervisorDriver
from pcifleet.host.libvirt import (
    DomainSpec,
    GuestCell,
    GuestDevice,
    GuestPort,
    render_device,
    render_domain,
    to_string,
)
from pcifleet.host.libvirt.devices import Element
from pcifleet.host.vf.model import LinkState, VfSettings, VfState, VlanTag
from pcifleet.host.vf.service import VfManager
from pcifleet.host.vf.snapshot import snapshot_attributes, snapshot_from_attributes

log = logging.getLogger("pcifleet.agent.plug")

DOMAIN_PREFIX: Final = "pcifleet-"
#: the XML namespace of pcifleet's ``<metadata>`` child in a domain
METADATA_NS: Final = "https://pcifleet.dev/xmlns/domain/1"
_M: Final = f"{{{METADATA_NS}}}"

Renderer = Callable[[DomainSpec], Element]
Item = GuestDevice | GuestPort
#: pre-plug VF snapshots by (PF netdev, VF index)
Snapshots = Mapping[tuple[str, int], VfState]


def domain_name(instance_id: str) -> str:
    """The libvirt name of an instance's domain (instance names are only unique per project)."""
    return f"{DOMAIN_PREFIX}{instance_id}"


@dataclass(frozen=True, slots=True)
class VfBinding:
    """One VF the agent configures for a port: where it is and what it must become."""

    port_id: str
    pf_ifname: str
    vf_index: int
    settings: VfSettings


# --- from the desired state to guest items -------------------------------------------------------


def vf_settings(port: DesiredPortOut) -> VfSettings:
    """The VF settings of a port (None fields: the port says nothing, leave the VF as is)."""
    return VfSettings(
        mac=port.mac_address,
        vlan=VlanTag(vid=port.vlan or 0),
        min_tx_rate=port.min_tx_rate_mbps,
        max_tx_rate=port.max_tx_rate_mbps,
        spoofchk=port.spoofchk,
        trust=port.trusted,
        link_state=None if port.link_state is None else LinkState(port.link_state),
    )


def vf_binding(port: DesiredPortOut) -> VfBinding | None:
    """The VF a port needs configured; None for ports without one (normal, direct-physical)."""
    info = vnic_info(VnicType(port.vnic_type))
    if info.device_type is not DeviceType.VF or port.vf_index is None:
        return None
    if port.pf_ifname is None:
        raise PlugFailed(
            f"port {port.id}: the PF of VF {port.vf_address} has no netdev to configure it on",
            instance="-",
            step="vf",
        )
    return VfBinding(port.id, port.pf_ifname, port.vf_index, vf_settings(port))


def guest_port(port: DesiredPortOut) -> GuestPort:
    """The port as the renderer takes it, by its vnic type's plug kind."""
    vnic = VnicType(port.vnic_type)
    plug = vnic_info(vnic).plug
    if plug is PlugKind.HOSTDEV:
        address = port.pf_address or port.vf_address
        return GuestPort(vnic, address=_address(address), managed=port.managed)
    if plug is PlugKind.HOSTDEV_INTERFACE:
        return GuestPort(
            vnic,
            mac=port.mac_address,
            vlan=port.vlan,
            address=_address(port.vf_address),
            managed=port.managed,
        )
    if plug is PlugKind.MACVTAP:
        return GuestPort(vnic, mac=port.mac_address, vlan=port.vlan, vf_netdev=port.vf_ifname)
    return GuestPort(vnic, mac=port.mac_address)


def _address(text: str | None) -> PciAddress | None:
    return None if text is None else PciAddress.parse(text)


def _bare_port_device(device: DesiredDeviceOut) -> GuestPort:
    """A device claimed for a port the networking API does not know (a tool's port
    request): a direct VF, or the whole function for a PF or plain device."""
    whole = device.dev_type in (DeviceType.PF.value, DeviceType.PCI.value)
    vnic = VnicType.DIRECT_PHYSICAL if whole else VnicType.DIRECT
    return GuestPort(vnic, address=PciAddress.parse(device.address), managed=device.managed)


def guest_items(instance: DesiredInstanceOut) -> dict[str, Item]:
    """Every device and port of the instance by key (port id, or device address)."""
    ports = {p.id for p in instance.ports}
    items: dict[str, Item] = {}
    for device in instance.devices:
        if device.requester_kind != "port":
            address = PciAddress.parse(device.address)
            items[str(address)] = GuestDevice(address, managed=device.managed)
        elif device.requester not in ports:
            items[device.requester] = _bare_port_device(device)
    for port in instance.ports:
        items[port.id] = guest_port(port)
    return items


def domain_spec(instance: DesiredInstanceOut, items: Iterable[Item]) -> DomainSpec:
    chosen = tuple(items)
    cells = tuple(
        GuestCell(
            node=c.guest_node,
            host_cell=c.host_cell,
            vcpus=c.vcpus,
            memory_mib=c.memory_mb,
            pinned_cpus=frozenset(c.pinned_cpus),
            hugepage_size_kib=c.hugepage_size_kb,
        )
        for c in instance.cells
    )
    return DomainSpec(
        name=domain_name(instance.id),
        uuid=UUID(instance.id),
        vcpus=sum(c.vcpus for c in cells) if cells else instance.vcpus,
        memory_mib=sum(c.memory_mib for c in cells) if cells else instance.memory_mb,
        cells=cells,
        devices=tuple(i for i in chosen if isinstance(i, GuestDevice)),
        ports=tuple(i for i in chosen if isinstance(i, GuestPort)),
    )


# --- metadata: what a restarted agent reads back ------------------------------------------------


def with_metadata(
    root: Element,
    plugged: Plugged,
    vfs: Iterable[VfBinding],
    snapshots: Snapshots | None = None,
    *,
    pending: bool = False,
) -> Element:
    """``root`` with ``<metadata><pcifleet:instance>`` naming what the agent plugged, each VF
    with its pre-plug snapshot (``<pcifleet:snapshot>``) when ``snapshots`` has one.

    ``pending``: the VFs are not configured yet (a domain migrated in: the destination's
    agent configures them when it adopts the domain, see :meth:`HostApplier.settle`)."""
    metadata = etree.SubElement(root, "metadata")
    instance = etree.SubElement(
        metadata, f"{_M}instance", nsmap={"pcifleet": METADATA_NS}, id=plugged.instance_id
    )
    instance.set("name", plugged.name)
    for address in plugged.devices:
        etree.SubElement(instance, f"{_M}device", address=address)
    for port in plugged.ports:
        etree.SubElement(instance, f"{_M}port", id=port)
    for vf in vfs:
        element = etree.SubElement(
            instance, f"{_M}vf", port=vf.port_id, pf=vf.pf_ifname, index=str(vf.vf_index)
        )
        if pending:
            element.set("pending", "true")
        snapshot = (snapshots or {}).get((vf.pf_ifname, vf.vf_index))
        if snapshot is not None:
            etree.SubElement(element, f"{_M}snapshot", snapshot_attributes(snapshot))
    return root


@dataclass(frozen=True, slots=True)
class FoundDomain:
    plugged: Plugged
    vfs: tuple[tuple[str, int], ...]
    #: (PF netdev, snapshot) of the VFs whose pre-plug state the metadata kept
    snapshots: tuple[tuple[str, VfState], ...] = ()
    #: VFs not configured yet (the domain migrated in; :meth:`HostApplier.settle` does it)
    pending: tuple[tuple[str, int], ...] = ()


def _snapshot_of(element: Element, pf: str, index: int) -> VfState | None:
    """The VF's stored snapshot; None when there is none or it cannot be read (logged: the
    VF is then not restored on unplug, which beats refusing to unplug)."""
    stored = element.find(f"{_M}snapshot")
    if stored is None:
        return None
    try:
        return snapshot_from_attributes({str(k): str(v) for k, v in stored.items()}, index)
    except PcifleetError as exc:
        log.error(
            "VF %s/%d: stored snapshot unreadable, it will not be restored: %s", pf, index, exc
        )
        return None


def read_metadata(xml: str) -> FoundDomain | None:
    """What :func:`with_metadata` wrote, or None for a domain pcifleet did not define."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(xml.encode(), parser)
    instance = root.find(f"metadata/{_M}instance")
    if instance is None:
        return None
    plugged = Plugged(
        instance_id=str(instance.get("id")),
        name=str(instance.get("name")),
        devices=tuple(sorted(str(e.get("address")) for e in instance.iterfind(f"{_M}device"))),
        ports=tuple(sorted(str(e.get("id")) for e in instance.iterfind(f"{_M}port"))),
    )
    vfs: list[tuple[str, int]] = []
    snapshots: list[tuple[str, VfState]] = []
    pending: list[tuple[str, int]] = []
    for element in instance.iterfind(f"{_M}vf"):
        pf, index = str(element.get("pf")), int(str(element.get("index")))
        vfs.append((pf, index))
        if element.get("pending") == "true":
            pending.append((pf, index))
        snapshot = _snapshot_of(element, pf, index)
        if snapshot is not None:
            snapshots.append((pf, snapshot))
    return FoundDomain(plugged, tuple(vfs), tuple(snapshots), tuple(pending))


# --- the applier ------------------------------------------------------------------------------


def _failed(instance: str, step: str, cause: Exception) -> PlugFailed:
    return PlugFailed(str(cause), instance=instance, step=step)


class HostApplier:
    """The agent's :class:`~pcifleet.host.agent.Applier` over a VF manager and a hypervisor."""

    def __init__(
        self,
        vf_manager: VfManager,
        hypervisor: HypervisorDriver,
        *,
        render: Renderer = render_domain,
    ) -> None:
        self.vf_manager = vf_manager
        self.hypervisor = hypervisor
        self.render = render
        #: VFs held per instance id (from plugs, or read back from the domains' metadata)
        self._vfs: dict[str, tuple[tuple[str, int], ...]] = {}
        #: what this process plugged, with the desired state (for hot plug's old fragments);
        #: used only while the hypervisor's domain still says the same
        self._plugged: dict[str, Plugged] = {}
        #: VFs of domains that migrated in and still need configuring, per instance id
        self._pending: dict[str, tuple[tuple[str, int], ...]] = {}

    # -- found -----------------------------------------------------------------------------

    def found(self) -> dict[str, Plugged]:
        """The instances plugged on this host, from the hypervisor's pcifleet domains."""
        plugged: dict[str, Plugged] = {}
        for info in self.hypervisor.list_domains():
            if not info.name.startswith(DOMAIN_PREFIX):
                continue
            domain = read_metadata(self.hypervisor.xml(info.name))
            if domain is None:
                continue
            key = domain.plugged.instance_id
            cached = self._plugged.get(key)
            plugged[key] = cached if cached == domain.plugged else domain.plugged
            self._vfs.setdefault(domain.plugged.instance_id, domain.vfs)
            self._adopt(key, domain.snapshots)
            if domain.pending:
                self._pending[key] = domain.pending
        return plugged

    def _adopt(self, instance_id: str, snapshots: Iterable[tuple[str, VfState]]) -> None:
        """Hold the VFs of a domain an earlier agent process plugged with their snapshots."""
        for pf, snapshot in snapshots:
            if self.vf_manager.adopt(pf, snapshot.index, snapshot):
                log.info(
                    "instance %s: took up the pre-plug snapshot of VF %s/%d from its domain",
                    instance_id,
                    pf,
                    snapshot.index,
                )

    def _snapshots(self, vfs: Iterable[VfBinding]) -> dict[tuple[str, int], VfState]:
        """The VF manager's snapshots of ``vfs`` (taken by ``configure``), for the metadata."""
        found = {}
        for vf in vfs:
            snapshot = self.vf_manager.snapshot(vf.pf_ifname, vf.vf_index)
            if snapshot is not None:
                found[(vf.pf_ifname, vf.vf_index)] = snapshot
        return found

    # -- plug --------------------------------------------------------------------------------

    def _prepare(self, instance: Plugged) -> tuple[DesiredInstanceOut, DomainSpec, list[VfBinding]]:
        desired = instance.desired
        if desired is None:
            raise PlugFailed(
                "no desired state to plug from", instance=instance.instance_id, step="prepare"
            )
        try:
            spec = domain_spec(desired, guest_items(desired).values())
            vfs = [b for b in map(vf_binding, desired.ports) if b is not None]
        except PcifleetError as exc:
            raise _failed(instance.instance_id, "prepare", exc) from exc
        return desired, spec, vfs

    def plug(self, instance: Plugged) -> None:
        """Configure the VFs, define and start the domain; on failure undo all of it."""
        _, spec, vfs = self._prepare(instance)
        done: list[VfBinding] = []
        defined = False
        step = "vf"
        try:
            for vf in vfs:
                self.vf_manager.configure(vf.pf_ifname, vf.vf_index, vf.settings)
                done.append(vf)
            step = "define"
            xml = to_string(with_metadata(self.render(spec), instance, vfs, self._snapshots(vfs)))
            self.hypervisor.define(xml)
            defined = True
            step = "start"
            self.hypervisor.start(spec.name)
        except PcifleetError as exc:
            self._undo(spec.name if defined else None, done)
            raise _failed(instance.instance_id, step, exc) from exc
        self._vfs[instance.instance_id] = tuple((v.pf_ifname, v.vf_index) for v in vfs)
        self._plugged[instance.instance_id] = instance
        log.info(
            "plugged instance %s (%s) as %s: devices %s, VFs %s",
            instance.instance_id,
            instance.name,
            spec.name,
            ",".join(instance.devices) or "-",
            ",".join(f"{v.pf_ifname}/{v.vf_index}" for v in vfs) or "-",
        )

    def _undo(self, domain: str | None, vfs: list[VfBinding]) -> None:
        """Best effort: undefine a domain left by a failed plug, restore its VFs."""
        if domain is not None:
            try:
                self._remove_domain(domain)
            except PcifleetError as exc:
                log.error("rollback: domain %s could not be removed: %s", domain, exc)
        for vf in reversed(vfs):
            try:
                self.vf_manager.release(vf.pf_ifname, vf.vf_index)
            except PcifleetError as exc:
                log.error("rollback: VF %s/%d not restored: %s", vf.pf_ifname, vf.vf_index, exc)

    # -- unplug ------------------------------------------------------------------------------

    def _remove_domain(self, name: str) -> None:
        try:
            if self.hypervisor.state(name).active:
                self.hypervisor.stop(name)
            self.hypervisor.undefine(name)
        except DomainNotFound:
            return

    def unplug(self, instance: Plugged) -> None:
        """Stop and undefine the domain, then restore every VF it held."""
        name = domain_name(instance.instance_id)
        try:
            self._remove_domain(name)
        except PcifleetError as exc:
            raise _failed(instance.instance_id, "undefine", exc) from exc
        errors = []
        for pf, index in self._vfs.get(instance.instance_id, ()):
            try:
                self.vf_manager.release(pf, index)
            except PcifleetError as exc:
                errors.append(f"{pf}/{index}: {exc}")
        if errors:
            raise PlugFailed("; ".join(errors), instance=instance.instance_id, step="release")
        self._vfs.pop(instance.instance_id, None)
        self._plugged.pop(instance.instance_id, None)
        log.info("unplugged instance %s (%s)", instance.instance_id, instance.name)

    # -- migration ---------------------------------------------------------------------------

    def settle(self, instance: Plugged) -> None:
        """Finish adopting a domain that migrated in: configure its pending VFs (each
        snapshotted first, so a later unplug restores the destination's own state) and
        redefine the domain with the snapshots in its metadata. Nothing to do otherwise."""
        pending = set(self._pending.get(instance.instance_id, ()))
        if not pending or instance.desired is None:
            return
        _, spec, vfs = self._prepare(instance)
        try:
            for vf in vfs:
                if (vf.pf_ifname, vf.vf_index) in pending:
                    self.vf_manager.configure(vf.pf_ifname, vf.vf_index, vf.settings)
            xml = to_string(with_metadata(self.render(spec), instance, vfs, self._snapshots(vfs)))
            self.hypervisor.define(xml)
        except PcifleetError as exc:
            raise _failed(instance.instance_id, "settle", exc) from exc
        self._pending.pop(instance.instance_id, None)
        self._vfs[instance.instance_id] = tuple((v.pf_ifname, v.vf_index) for v in vfs)
        self._plugged[instance.instance_id] = instance
        log.info("adopted migrated instance %s: configured VFs %s", instance.instance_id, pending)

    def migrated_out(self, instance: DesiredInstanceOut) -> None:
        """The guest left this host: restore the VFs its ports held here (the snapshots
        this process took or adopted; a VF without one is left as it is) and forget it."""
        held = set(self._vfs.pop(instance.id, ()))
        held |= {(b.pf_ifname, b.vf_index) for b in map(_binding_or_none, instance.ports) if b}
        for pf, index in sorted(held):
            try:
                self.vf_manager.release(pf, index)
            except PcifleetError as exc:
                log.error(
                    "instance %s left: VF %s/%d not restored: %s", instance.id, pf, index, exc
                )
        self._plugged.pop(instance.id, None)
        self._pending.pop(instance.id, None)
        log.info("instance %s migrated away: released VFs %s", instance.id, sorted(held))

    # -- hot plug ----------------------------------------------------------------------------

    def update(self, old: Plugged, new: Plugged) -> None:
        """Hot plug what ``new`` gained and unplug what it lost on the running domain.

        Without the old desired state (a restarted agent) the fragments to detach are not
        known: the instance is unplugged and plugged whole instead.
        """
        if old.desired is None:
            self.unplug(old)
            self.plug(new)
            return
        _, spec, vfs = self._prepare(new)
        before = guest_items(old.desired)
        after = guest_items(spec_source(new))
        name = spec.name
        for key in sorted(set(before) - set(after)):
            self.detach(new.instance_id, name, key, before[key], old)
        for key in sorted(set(after) - set(before)):
            self.attach(new.instance_id, name, after[key], _vf_for(vfs, key))
        xml = to_string(with_metadata(self.render(spec), new, vfs, self._snapshots(vfs)))
        try:
            self.hypervisor.define(xml)
        except PcifleetError as exc:
            raise _failed(new.instance_id, "define", exc) from exc
        self._vfs[new.instance_id] = tuple((v.pf_ifname, v.vf_index) for v in vfs)
        self._plugged[new.instance_id] = new

    def attach(self, instance_id: str, domain: str, item: Item, vf: VfBinding | None) -> None:
        """Hot plug one port or device; its VF is configured first and restored on failure."""
        try:
            if vf is not None:
                self.vf_manager.configure(vf.pf_ifname, vf.vf_index, vf.settings)
            self.hypervisor.attach_device(domain, to_string(render_device(item)), config=False)
        except PcifleetError as exc:
            self._undo(None, [vf] if vf is not None else [])
            raise _failed(instance_id, "attach", exc) from exc
        log.info("hot plugged %s into %s", _describe(item), domain)

    def detach(self, instance_id: str, domain: str, key: str, item: Item, old: Plugged) -> None:
        """Hot unplug one port or device, then restore its VF."""
        try:
            self.hypervisor.detach_device(domain, to_string(render_device(item)), config=False)
        except DeviceNotAttached:
            log.info("%s was already gone from %s", _describe(item), domain)
        except PcifleetError as exc:
            raise _failed(instance_id, "detach", exc) from exc
        assert old.desired is not None
        for port in old.desired.ports:
            vf = vf_binding(port) if port.id == key else None
            if vf is not None:
                self.vf_manager.release(vf.pf_ifname, vf.vf_index)
        log.info("hot unplugged %s from %s", _describe(item), domain)


def _binding_or_none(port: DesiredPortOut) -> VfBinding | None:
    try:
        return vf_binding(port)
    except PcifleetError:
        return None


def spec_source(instance: Plugged) -> DesiredInstanceOut:
    assert instance.desired is not None
    return instance.desired


def _vf_for(vfs: Iterable[VfBinding], key: str) -> VfBinding | None:
    return next((vf for vf in vfs if vf.port_id == key), None)


def _describe(item: Item) -> str:
    if isinstance(item, GuestDevice):
        return f"device {item.address}"
    return f"{item.vnic_type} port {item.mac or item.address}"


__all__ = [
    "DOMAIN_PREFIX",
    "METADATA_NS",
    "FoundDomain",
    "HostApplier",
    "VfBinding",
    "domain_name",
    "domain_spec",
    "guest_items",
    "guest_port",
    "read_metadata",
    "vf_binding",
    "vf_settings",
    "with_metadata",
]
