"""Attach a port to a running instance and detach it (Nova's SR-IOV interface attach/detach).

An attach is a claim on ONE host, the instance's: in one transaction
(:meth:`pcifleet.control.scheduler.scheduler.Scheduler.change_host`: host generation
compare-and-swap first) the port's device request is fitted on that host only (the
instance's NUMA cells and the flavor's PCI NUMA policy apply, as at boot), the chosen device
is allocated with its PF/VF relatives blocked, the request and its devices are appended to
the instance's stored requests and placement (so a later delete frees them like any other),
and the port is bound (host, vif type, VLAN, Nova's profile keys). A detach does the reverse
in one transaction: the request leaves the instance, its device and relatives are freed, the
port is unbound (it stays, unbound, for reuse). The agent then plugs or unplugs from the
desired state it reads.

Refusals: the instance is not running on a host (409 ``pcifleet.port.instance_not_running``),
the port is bound already (409 ``pcifleet.port.in_use``), no free device on the instance's
host for the port's physical network (409 ``pcifleet.port.no_device_on_host`` with the fit's
reason), a port not attached to that instance on detach (404), the mixed vnic type policy
(``deny``: 400; ``warn``: the result carries the warning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pcifleet.control.db.models import InstanceRow
from pcifleet.control.scheduler.codec import (
    LIVE_STATES,
    placement_to_json,
    requests_from_json,
    requests_to_json,
)
from pcifleet.control.scheduler.hostload import HostHead
from pcifleet.control.scheduler.scheduler import HostChange
from pcifleet.control.services.instances import InstanceRecord, InstanceService, port_requests
from pcifleet.control.services.networks import NetworkService, Nic, PortRecord
from pcifleet.control.services.principal import Principal
from pcifleet.domain.address import PciAddress
from pcifleet.domain.device_fit import choose_devices
from pcifleet.domain.errors import InvalidInput, NotFound
from pcifleet.domain.flavor import Flavor
from pcifleet.domain.hoststate import HostState, free_held
from pcifleet.domain.placement import FitFailure, FitOptions, InstanceRequest, Placement
from pcifleet.domain.request import DeviceRequest, NumaPolicy, RequesterKind
from pcifleet.domain.state import Operation
from pcifleet.network.errors import InstanceNotRunning, NoDeviceOnHost, PortInUse
from pcifleet.network.policy import check_mixed_vnic_types


@dataclass(frozen=True, slots=True)
class AttachResult:
    instance: InstanceRecord
    port: PortRecord
    #: the mixed vnic type warning (policy warn)
    warnings: tuple[str, ...] = ()


# --- the host view, pure -------------------------------------------------------------------------


def with_devices(
    view: HostState, placement: Placement, group: tuple[PciAddress, ...]
) -> tuple[HostState, Placement]:
    """The host with ``group`` allocated to the placement's instance, as one more request."""
    owner = placement.instance_id
    host = view.transitions((address, Operation.ALLOCATE, owner) for address in group)
    grown = replace(placement, devices=(*placement.devices, group))
    return _placed(host, grown), grown


def without_request(
    view: HostState, placement: Placement, index: int
) -> tuple[HostState, Placement]:
    """The host with the devices of request ``index`` freed (their relatives restored)."""
    host = free_held(view, placement.instance_id, placement.devices[index])
    kept = placement.devices[:index] + placement.devices[index + 1 :]
    shrunk = replace(placement, devices=kept)
    return _placed(host, shrunk), shrunk


def _placed(host: HostState, placement: Placement) -> HostState:
    """The host with the instance's placement replaced (CPU and memory are unchanged)."""
    placements = {**host.placements, placement.instance_id: placement}
    return replace(host, placements=MappingProxyType(placements))


def port_index(requests: Sequence[DeviceRequest], port_id: str) -> int | None:
    """Position of the port's device request among the instance's requests (None: none)."""
    for i, request in enumerate(requests):
        if request.requester.kind is RequesterKind.PORT and request.requester.name == port_id:
            return i
    return None


# --- inside the host transaction -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Instance:
    """The instance row's parts an attach or detach rewrites, read in the transaction."""

    requests: tuple[DeviceRequest, ...]
    numa_policy: NumaPolicy | None

    @classmethod
    def read(cls, session: Session, instance_id: str, host: HostHead) -> _Instance:
        row = session.execute(
            select(InstanceRow.requests, InstanceRow.flavor, InstanceRow.state).where(
                InstanceRow.id == instance_id
            )
        ).one_or_none()
        if row is None or row[2] not in LIVE_STATES:
            raise InstanceNotRunning(
                f"instance {instance_id} is no longer running on host {host.name}",
                instance=instance_id,
            )
        return cls(requests_from_json(row[0] or ()), _flavor_policy(row[1] or {}))


def _flavor_policy(flavor: dict[str, Any]) -> NumaPolicy | None:
    specs = {str(k): str(v) for k, v in dict(flavor.get("extra_specs") or {}).items()}
    name = str(flavor.get("name", ""))
    vcpus, memory = int(flavor.get("vcpus", 1)), int(flavor.get("memory_mb", 1))
    return Flavor.from_extra_specs(name, vcpus, memory, specs).pci_numa_policy


def _placement(view: HostState, instance_id: str, host: HostHead) -> Placement:
    placement = view.placements.get(instance_id)
    if placement is None:
        raise InstanceNotRunning(
            f"instance {instance_id} has no placement on host {host.name}", instance=instance_id
        )
    return placement


def _store(
    session: Session, instance_id: str, placement: Placement, requests: Sequence[DeviceRequest]
) -> None:
    session.execute(
        update(InstanceRow)
        .where(InstanceRow.id == instance_id)
        .values(
            placement=placement_to_json(placement),
            requests=requests_to_json(requests),
            generation=InstanceRow.generation + 1,
        )
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True, slots=True)
class _Attach:
    instance_id: str
    port_id: str
    request: DeviceRequest | None
    networks: NetworkService
    options: FitOptions

    def __call__(self, session: Session, head: HostHead, view: HostState) -> HostChange:
        placement = _placement(view, self.instance_id, head)
        instance = _Instance.read(session, self.instance_id, head)
        requests, after, grown = instance.requests, view, placement
        group: tuple[PciAddress, ...] = ()
        if self.request is not None:
            group = self._pick(view, placement, instance.numa_policy, head)
            after, grown = with_devices(view, placement, group)
            requests = (*requests, self.request)
            _store(session, self.instance_id, grown, requests)
        self.networks.bind(session, self.instance_id, head, (self.port_id,), requests, grown)
        ids = {a: self.request.request_id for a in group} if self.request else {}
        return HostChange(after, group, ids)

    def _pick(
        self,
        view: HostState,
        placement: Placement,
        policy: NumaPolicy | None,
        head: HostHead,
    ) -> tuple[PciAddress, ...]:
        assert self.request is not None
        request = InstanceRequest(
            vcpus=0,
            memory_mb=0,
            device_requests=(self.request,),
            numa_policy=policy,
            instance_id=self.instance_id,
        )
        chosen = choose_devices(view, request, placement.host_cells or None, self.options)
        if isinstance(chosen, FitFailure):
            raise NoDeviceOnHost(
                f"no device for port {self.port_id} on host {head.name}, where instance "
                f"{self.instance_id} runs: {chosen.message}",
                port=self.port_id,
                host=head.name,
                stage=str(chosen.stage),
            )
        return chosen[0]


@dataclass(frozen=True, slots=True)
class _Detach:
    instance_id: str
    port_id: str
    networks: NetworkService

    def __call__(self, session: Session, head: HostHead, view: HostState) -> HostChange:
        placement = _placement(view, self.instance_id, head)
        instance = _Instance.read(session, self.instance_id, head)
        index = port_index(instance.requests, self.port_id)
        after = view
        group: tuple[PciAddress, ...] = ()
        if index is not None and index < len(placement.devices):
            group = placement.devices[index]
            after, shrunk = without_request(view, placement, index)
            requests = instance.requests[:index] + instance.requests[index + 1 :]
            _store(session, self.instance_id, shrunk, requests)
        self.networks.unbind_port(session, self.port_id)
        return HostChange(after, group)


# --- the service ---------------------------------------------------------------------------------


class PortAttachService:
    """Attach/detach ports on running instances (the instances' scheduler does the claim)."""

    def __init__(self, instances: InstanceService, networks: NetworkService) -> None:
        self._instances = instances
        self._networks = networks

    def _running(self, who: Principal, instance_id: str) -> tuple[InstanceRecord, str]:
        record = self._instances.show(who, instance_id)
        if record.state.value not in LIVE_STATES or record.host_id is None:
            raise InstanceNotRunning(
                f"instance {instance_id} is {record.state}, not running on a host",
                instance=instance_id,
            )
        return record, record.host_id

    def attach(
        self,
        who: Principal,
        instance_id: str,
        *,
        port_id: str | None = None,
        nic: Nic | None = None,
    ) -> AttachResult:
        """Attach an existing port (``port_id``) or a new one on ``nic.net``."""
        who.require_user("attaching a port")
        _, host_id = self._running(who, instance_id)
        port, created = self._port(who, port_id, nic)
        try:
            warnings = self._mixed(who, instance_id, port)
            request = self._networks.port_request(who, port)
            device = next(iter(port_requests([request])), None)
            options = self._instances.scheduler.options.fit
            attach = _Attach(instance_id, port.id, device, self._networks, options)
            self._instances.scheduler.change_host(host_id, attach, f"attach of port {port.id}")
        except Exception:
            if created:
                self._networks.delete_port(who, port.id)
            raise
        return AttachResult(
            self._instances.show(who, instance_id), self._networks.get_port(who, port.id), warnings
        )

    def _port(
        self, who: Principal, port_id: str | None, nic: Nic | None
    ) -> tuple[PortRecord, bool]:
        if nic is not None and nic.net is not None and port_id is None:
            return self._networks.create_port(who, nic.net, vnic_type=nic.vnic_type), True
        chosen = port_id if port_id is not None else (nic.port if nic else None)
        if chosen is None or (nic is not None and port_id is not None):
            raise InvalidInput(
                "attach names exactly one of a port id or a network NIC",
                field="port",
                rule="port_or_net",
            )
        port = self._networks.get_port(who, chosen)
        if port.instance_id is not None:
            raise PortInUse(
                f"port {port.id} is already bound to instance {port.instance_id}", port=port.id
            )
        return port, False

    def _mixed(self, who: Principal, instance_id: str, port: PortRecord) -> tuple[str, ...]:
        current = self._networks.list_ports(who, instance=instance_id)
        types = [p.vnic_type for p in current] + [port.vnic_type]
        return check_mixed_vnic_types(types, self._networks.options.mixed_vnic_policy)

    def detach(self, who: Principal, instance_id: str, port_id: str) -> AttachResult:
        """Free the port's device (and relatives) and unbind it; the port stays."""
        who.require_user("detaching a port")
        _, host_id = self._running(who, instance_id)
        port = self._networks.get_port(who, port_id)
        if port.instance_id != instance_id:
            raise NotFound(
                f"port {port_id} is not attached to instance {instance_id}", kind="port", id=port_id
            )
        detach = _Detach(instance_id, port_id, self._networks)
        self._instances.scheduler.change_host(host_id, detach, f"detach of port {port_id}")
        return AttachResult(
            self._instances.show(who, instance_id), self._networks.get_port(who, port_id)
        )
