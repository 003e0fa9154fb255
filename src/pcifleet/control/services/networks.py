"""Networks and ports: the controller's half of SR-IOV networking.

Networks are owned by a project and may be shared with every project; each has one or several
segments (:mod:`pcifleet.network.segments`), VLAN ids and VNIs allocated from the configured
ranges when not given (the database's unique segment key refuses a segment another network
holds). Ports live on a network: a unique MAC (allocated under the configured prefix), a vnic
type and the settings the agent turns into VF settings:

- ``port_security`` -> VF spoof check; ``admin_state_up`` false -> link state ``disable``
  (it wins), else ``propagate_uplink_status`` -> ``auto``, else ``enable`` (Neutron's agent);
- a QoS policy (egress ``max_kbps``/``min_kbps``) converted to the VF's whole Mbit/s by
  :func:`pcifleet.host.vf.qos.vf_rates_from_qos` (a rounded value comes back with a note; a
  burst is refused because a VF cannot enforce one);
- security groups are refused on SR-IOV ports: their traffic never crosses a host firewall.

Boot: :meth:`NetworkService.resolve_nics` turns ``--nic net=NAME[,vnic-type=...]`` (a port is
created) and ``--nic port=ID`` into :class:`PortRequest` objects (the physical network of the
network's first flat/VLAN segment) and applies the mixed vnic type policy. The service is also
the instance service's :class:`PortBinder`: inside the claim transaction it binds every port
(host, vif type, vif details with the VLAN, binding profile from the claimed device) and, on
delete, unbinds them in the release transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy.exc
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import DeviceRow, NetworkRow, PortRow, SegmentRow
from pcifleet.control.scheduler.hostload import HostHead
from pcifleet.control.services.instances import DEFAULT_PROJECT, PortRequest
from pcifleet.control.services.principal import Principal
from pcifleet.control.settings import Settings
from pcifleet.domain.device import DeviceType
from pcifleet.domain.errors import AlreadyExists, InvalidInput, NotFound
from pcifleet.domain.placement import Placement
from pcifleet.domain.request import DeviceRequest, NumaPolicy, RequesterKind
from pcifleet.domain.vnic import VnicType, parse_vnic_type, vnic_info
from pcifleet.host.vf.model import LinkState
from pcifleet.host.vf.qos import VfRates, vf_rates_from_qos
from pcifleet.network.binding import (
    UNBOUND,
    Binding,
    BoundDevice,
    ProfileValue,
    bind,
    port_physical_network,
)
from pcifleet.network.errors import InvalidPort, NetworkInUse, PortInUse
from pcifleet.network.mac import MacPrefix, allocate_mac, normalize_mac
from pcifleet.network.policy import MixedVnicPolicy, check_mixed_vnic_types, parse_policy
from pcifleet.network.segments import (
    IdRange,
    NetworkType,
    Segment,
    SegmentSpec,
    VlanRanges,
    allocate,
    check_specs,
    parse_vni_ranges,
)

Clock = Callable[[], dt.datetime]

DEFAULT_VLAN_RANGES: Final = "physnet1:1000:1999,physnet2:2000:2999"
DEFAULT_VNI_RANGES: Final = "1:65535"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    """Operator choices of the networking area (Neutron's ML2 type driver ranges, base MAC)."""

    vlan_ranges: VlanRanges = field(default_factory=lambda: VlanRanges.parse(DEFAULT_VLAN_RANGES))
    vni_ranges: tuple[IdRange, ...] = field(
        default_factory=lambda: parse_vni_ranges(DEFAULT_VNI_RANGES)
    )
    mac_prefix: MacPrefix = field(default_factory=lambda: MacPrefix.parse("fa:16:3e"))
    mixed_vnic_policy: MixedVnicPolicy = MixedVnicPolicy.WARN


def network_options(settings: Settings) -> NetworkOptions:
    """The networking options of the controller's settings (validated when they were built)."""
    return NetworkOptions(
        vlan_ranges=VlanRanges.parse(settings.network_vlan_ranges),
        vni_ranges=parse_vni_ranges(settings.network_vni_ranges),
        mac_prefix=MacPrefix.parse(settings.mac_prefix),
        mixed_vnic_policy=parse_policy(settings.mixed_vnic_policy),
    )


# --- records -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    id: str
    name: str
    project: str
    shared: bool
    segments: tuple[Segment, ...]
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class QosSpec:
    """A port's QoS policy as asked: egress kbit/s (burst only to be refused)."""

    max_kbps: int | None = None
    min_kbps: int | None = None
    max_burst_kbps: int | None = None


@dataclass(frozen=True, slots=True)
class VfPortSettings:
    """What the agent sets on the port's VF (None rates: the policy says nothing)."""

    spoofchk: bool
    link_state: LinkState
    max_tx_rate_mbps: int | None
    min_tx_rate_mbps: int | None


@dataclass(frozen=True, slots=True)
class PortRecord:
    id: str
    name: str
    project: str
    network_id: str
    mac_address: str
    vnic_type: VnicType
    trusted: bool | None
    port_security: bool
    propagate_uplink_status: bool
    admin_state_up: bool
    qos_max_kbps: int | None
    qos_min_kbps: int | None
    numa_policy: NumaPolicy | None
    instance_id: str | None
    binding: Binding | None
    created_at: dt.datetime
    #: None for ports without a VF (normal, direct-physical: Neutron writes nothing there)
    vf: VfPortSettings | None = None
    #: sentences for the user (a QoS rate rounded to whole Mbit/s)
    notes: tuple[str, ...] = ()

    @property
    def vif_type(self) -> str:
        return self.binding.vif_type if self.binding else UNBOUND


@dataclass(frozen=True, slots=True)
class Nic:
    """One ``--nic``: a network to create a port on, or an existing port."""

    net: str | None = None
    port: str | None = None
    vnic_type: VnicType = VnicType.NORMAL


@dataclass(frozen=True, slots=True)
class ResolvedNics:
    ports: tuple[PortRequest, ...]
    #: the mixed vnic type warning, when the policy is warn
    warnings: tuple[str, ...]
    #: ports created for ``net=`` NICs (the caller deletes them when the boot fails)
    created: tuple[str, ...]


# --- pure helpers --------------------------------------------------------------------------------


def link_state(admin_state_up: bool, propagate_uplink_status: bool) -> LinkState:
    """Neutron's agent: admin down wins (disable), then propagate (auto), else enable."""
    if not admin_state_up:
        return LinkState.DISABLE
    return LinkState.AUTO if propagate_uplink_status else LinkState.ENABLE


def _vf_settings(row: PortRow) -> tuple[VfPortSettings | None, tuple[str, ...]]:
    info = vnic_info(row.vnic_type)
    if info.device_type is None or info.device_type is DeviceType.PF:
        return None, ()
    qos = row.qos or {}
    rates = vf_rates_from_qos(qos.get("max_kbps"), qos.get("min_kbps"))
    settings = VfPortSettings(
        spoofchk=row.port_security,
        link_state=link_state(row.admin_state_up, row.propagate_uplink_status),
        max_tx_rate_mbps=rates.max_rate.mbps if rates.max_rate else None,
        min_tx_rate_mbps=rates.min_rate.mbps if rates.min_rate else None,
    )
    return settings, rates.notes


def _check_port_settings(
    vnic: VnicType, qos: QosSpec | None, security_groups: Sequence[str]
) -> VfRates | None:
    """Refuse what an SR-IOV port cannot do; the VF rates of its QoS policy."""
    info = vnic_info(vnic)
    if security_groups and info.needs_device:
        raise InvalidPort(
            f"security groups cannot filter a {vnic} port: its traffic bypasses the host "
            "firewall (port_filter false); use port_security (the VF spoof check) instead",
            field="security_groups",
            rule="security_groups_on_sriov_port",
        )
    if security_groups:
        raise InvalidPort(
            "pcifleet does not manage security groups; filter normal ports in your switch",
            field="security_groups",
            rule="unsupported",
        )
    if qos is None:
        return None
    return vf_rates_from_qos(qos.max_kbps, qos.min_kbps, qos.max_burst_kbps)


def _segment(row: SegmentRow) -> Segment:
    return Segment(NetworkType(row.network_type), row.physical_network, row.segmentation_id)


def _binding(row: PortRow) -> Binding | None:
    if row.binding_host is None:
        return None
    return Binding(row.binding_host, row.vif_type, row.vif_details, row.binding_profile)


def _port_record(row: PortRow) -> PortRecord:
    vf, notes = _vf_settings(row)
    qos = row.qos or {}
    return PortRecord(
        id=row.id,
        name=row.name,
        project=row.project,
        network_id=row.network_id,
        mac_address=row.mac_address,
        vnic_type=VnicType(row.vnic_type),
        trusted=row.trusted,
        port_security=row.port_security,
        propagate_uplink_status=row.propagate_uplink_status,
        admin_state_up=row.admin_state_up,
        qos_max_kbps=qos.get("max_kbps"),
        qos_min_kbps=qos.get("min_kbps"),
        numa_policy=None if row.numa_policy is None else NumaPolicy(row.numa_policy),
        instance_id=row.instance_id,
        binding=_binding(row),
        created_at=row.created_at,
        vf=vf,
        notes=notes,
    )


# --- the service ---------------------------------------------------------------------------------


class NetworkService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        options: NetworkOptions | None = None,
        clock: Clock = _now,
    ) -> None:
        self._sessions = sessions
        self.options = options or NetworkOptions()
        self._clock = clock

    # -- networks -------------------------------------------------------------------------------

    def create_network(
        self,
        who: Principal,
        name: str,
        segments: Sequence[SegmentSpec],
        *,
        project: str | None = None,
        shared: bool = False,
    ) -> NetworkRecord:
        """A network with its segments; ids left out are allocated from the ranges."""
        who.require_user("creating a network")
        owner = project or who.project or DEFAULT_PROJECT
        who.require_project(owner, "creating a network")
        if shared:
            who.require_admin("creating a shared network")
        specs = check_specs(segments)
        row = NetworkRow(id=str(uuid.uuid4()), name=name, project=owner, shared=shared)
        try:
            with self._sessions.begin() as session:
                session.add(row)
                session.flush()
                self._add_segments(session, row.id, specs)
        except sqlalchemy.exc.IntegrityError as exc:
            raise AlreadyExists(
                f"network {name!r} exists in project {owner}, or one of its segments belongs "
                "to another network",
                name=name,
            ) from exc
        return self.get_network(who, row.id)

    def _add_segments(
        self, session: Session, network_id: str, specs: Sequence[SegmentSpec]
    ) -> None:
        for position, spec in enumerate(specs):
            used = self._used_ids(session, spec)
            segment = allocate(spec, self.options.vlan_ranges, self.options.vni_ranges, used)
            session.add(
                SegmentRow(
                    id=str(uuid.uuid4()),
                    network_id=network_id,
                    position=position,
                    network_type=segment.network_type.value,
                    physical_network=segment.physical_network,
                    segmentation_id=segment.segmentation_id,
                    key=segment.key,
                )
            )
            session.flush()

    @staticmethod
    def _used_ids(session: Session, spec: SegmentSpec) -> set[int]:
        query = select(SegmentRow.segmentation_id).where(
            SegmentRow.network_type == spec.network_type.value,
            SegmentRow.segmentation_id.is_not(None),
        )
        if spec.network_type is NetworkType.VLAN:
            query = query.where(SegmentRow.physical_network == spec.physical_network)
        return {int(v) for v in session.scalars(query) if v is not None}

    def _network_row(self, session: Session, who: Principal, ref: str) -> NetworkRow:
        """A network the caller may see, by id or by name (own project's name first)."""
        row = session.get(NetworkRow, ref)
        if row is None:
            rows = session.scalars(select(NetworkRow).where(NetworkRow.name == ref)).all()
            visible = [r for r in rows if self._sees(who, r)]
            own = [r for r in visible if r.project == who.project]
            found = own or visible
            row = found[0] if found else None
        if row is None or not self._sees(who, row):
            raise NotFound(f"network {ref!r} not found", kind="network", id=ref)
        return row

    @staticmethod
    def _sees(who: Principal, row: NetworkRow) -> bool:
        return row.shared or who.is_admin or who.project == row.project

    def _network_record(self, session: Session, row: NetworkRow) -> NetworkRecord:
        segments = session.scalars(
            select(SegmentRow).where(SegmentRow.network_id == row.id).order_by(SegmentRow.position)
        )
        return NetworkRecord(
            row.id,
            row.name,
            row.project,
            row.shared,
            tuple(map(_segment, segments)),
            row.created_at,
        )

    def get_network(self, who: Principal, ref: str) -> NetworkRecord:
        who.require_user("showing a network")
        with self._sessions() as session:
            return self._network_record(session, self._network_row(session, who, ref))

    def list_networks(self, who: Principal) -> list[NetworkRecord]:
        """Networks the caller may see (its project's and shared ones), oldest first."""
        who.require_user("listing networks")
        with self._sessions() as session:
            rows = session.scalars(
                select(NetworkRow).order_by(NetworkRow.created_at, NetworkRow.id)
            )
            return [self._network_record(session, r) for r in rows if self._sees(who, r)]

    def delete_network(self, who: Principal, ref: str) -> None:
        who.require_user("deleting a network")
        with self._sessions.begin() as session:
            row = self._network_row(session, who, ref)
            who.require_project(row.project, "deleting a network")
            ports = session.scalars(select(PortRow.id).where(PortRow.network_id == row.id)).all()
            if ports:
                raise NetworkInUse(
                    f"network {row.name!r} still has {len(ports)} port(s); delete them first",
                    network=row.name,
                )
            session.delete(row)

    # -- ports ----------------------------------------------------------------------------------

    def create_port(
        self,
        who: Principal,
        network: str,
        *,
        name: str = "",
        vnic_type: VnicType | str = VnicType.NORMAL,
        mac_address: str | None = None,
        trusted: bool | None = None,
        port_security: bool = True,
        propagate_uplink_status: bool = False,
        admin_state_up: bool = True,
        qos: QosSpec | None = None,
        security_groups: Sequence[str] = (),
        numa_policy: NumaPolicy | None = None,
    ) -> PortRecord:
        """A port on ``network``; refuses what its vnic type cannot do (names the rule)."""
        who.require_user("creating a port")
        vnic = vnic_type if isinstance(vnic_type, VnicType) else parse_vnic_type(vnic_type)
        _check_port_settings(vnic, qos, security_groups)
        mac = None if mac_address is None else normalize_mac(mac_address)
        try:
            with self._sessions.begin() as session:
                net = self._network_row(session, who, network)
                port_physical_network(vnic, self._network_record(session, net).segments)
                taken = set(
                    session.scalars(select(PortRow.mac_address).where(PortRow.network_id == net.id))
                )
                row = PortRow(
                    id=str(uuid.uuid4()),
                    name=name,
                    project=who.project or net.project,
                    network_id=net.id,
                    mac_address=mac or allocate_mac(self.options.mac_prefix, taken),
                    vnic_type=vnic.value,
                    trusted=trusted,
                    port_security=port_security,
                    propagate_uplink_status=propagate_uplink_status,
                    admin_state_up=admin_state_up,
                    qos=None
                    if qos is None
                    else {"max_kbps": qos.max_kbps, "min_kbps": qos.min_kbps},
                    numa_policy=None if numa_policy is None else numa_policy.value,
                    vif_details={},
                    binding_profile={},
                )
                session.add(row)
                session.flush()
                return _port_record(row)
        except sqlalchemy.exc.IntegrityError as exc:
            raise AlreadyExists(
                f"MAC address {mac} is already used on network {network!r}", field="mac_address"
            ) from exc

    def _port_row(self, session: Session, who: Principal, port_id: str) -> PortRow:
        row = session.get(PortRow, port_id, populate_existing=True)
        if row is None or not (who.is_admin or who.project == row.project):
            raise NotFound(f"port {port_id!r} not found", kind="port", id=port_id)
        return row

    def get_port(self, who: Principal, port_id: str) -> PortRecord:
        who.require_user("showing a port")
        with self._sessions() as session:
            return _port_record(self._port_row(session, who, port_id))

    def list_ports(
        self, who: Principal, *, network: str | None = None, instance: str | None = None
    ) -> list[PortRecord]:
        """Ports the caller may see, oldest first, optionally of one network or instance."""
        who.require_user("listing ports")
        query = select(PortRow).order_by(PortRow.created_at, PortRow.id)
        if not who.is_admin:
            query = query.where(PortRow.project == who.project)
        if instance is not None:
            query = query.where(PortRow.instance_id == instance)
        with self._sessions() as session:
            if network is not None:
                query = query.where(
                    PortRow.network_id == self._network_row(session, who, network).id
                )
            return [_port_record(r) for r in session.scalars(query)]

    def delete_port(self, who: Principal, port_id: str) -> None:
        """Delete an unbound port (a port in use by an instance is a 409)."""
        who.require_user("deleting a port")
        with self._sessions.begin() as session:
            row = self._port_row(session, who, port_id)
            if row.instance_id is not None:
                raise PortInUse(
                    f"port {port_id} is in use by instance {row.instance_id}; delete or detach "
                    "the instance first",
                    port=port_id,
                )
            session.delete(row)

    # -- boot -----------------------------------------------------------------------------------

    def resolve_nics(self, who: Principal, nics: Sequence[Nic]) -> ResolvedNics:
        """The port requests of a boot's NICs (``net=`` NICs get a new port) and warnings."""
        created: list[str] = []
        records: list[PortRecord] = []
        try:
            for nic in nics:
                record = self._nic_port(who, nic)
                if nic.port is None:
                    created.append(record.id)
                records.append(record)
            warnings = check_mixed_vnic_types(
                (r.vnic_type for r in records), self.options.mixed_vnic_policy
            )
            requests = tuple(self.port_request(who, r) for r in records)
        except Exception:
            self.delete_ports(who, created)
            raise
        return ResolvedNics(requests, warnings, tuple(created))

    def _nic_port(self, who: Principal, nic: Nic) -> PortRecord:
        if (nic.net is None) == (nic.port is None):
            raise InvalidInput(
                "a NIC names exactly one of net= or port=", field="nics", rule="net_or_port"
            )
        if nic.net is not None:
            return self.create_port(who, nic.net, vnic_type=nic.vnic_type)
        assert nic.port is not None
        record = self.get_port(who, nic.port)
        if record.instance_id is not None:
            raise PortInUse(
                f"port {record.id} is in use by instance {record.instance_id}", port=record.id
            )
        return record

    def port_request(self, who: Principal, port: PortRecord) -> PortRequest:
        """The device-request view of a port (physical network of its flat/VLAN segment)."""
        network = self.get_network(who, port.network_id)
        return PortRequest(
            port_id=port.id,
            vnic_type=port.vnic_type,
            physical_network=port_physical_network(port.vnic_type, network.segments),
            trusted=port.trusted,
            numa_policy=port.numa_policy,
        )

    def delete_ports(self, who: Principal, port_ids: Sequence[str]) -> None:
        for port_id in port_ids:
            self.delete_port(who, port_id)

    # -- PortBinder: called inside the instance's claim / release transaction -------------------

    def bind(
        self,
        session: Session,
        instance_id: str,
        host: HostHead,
        port_ids: Sequence[str],
        requests: Sequence[DeviceRequest],
        placement: Placement,
    ) -> None:
        """Bind every known port of the boot to ``host`` and its claimed device."""
        devices = _port_devices(requests, placement)
        for port_id in port_ids:
            row = session.get(PortRow, port_id)
            if row is None:  # a port request built by a tool, not a networking port
                continue
            address = devices.get(port_id)
            device = None if address is None else _bound_device(session, host.id, address)
            segments = tuple(
                map(
                    _segment,
                    session.scalars(
                        select(SegmentRow)
                        .where(SegmentRow.network_id == row.network_id)
                        .order_by(SegmentRow.position)
                    ),
                )
            )
            result = bind(VnicType(row.vnic_type), host.name, segments, device, _user_profile(row))
            _write_binding(session, port_id, instance_id, result)

    def unbind_port(self, session: Session, port_id: str) -> None:
        """Unbind one port (detach from a running instance), in the caller's transaction."""
        session.execute(
            update(PortRow)
            .where(PortRow.id == port_id)
            .values(
                instance_id=None,
                binding_host=None,
                vif_type=UNBOUND,
                vif_details={},
                binding_profile={},
                updated_at=self._clock(),
            )
            .execution_options(synchronize_session=False)
        )

    def unbind(self, session: Session, instance_id: str) -> None:
        """Unbind the instance's ports: Nova's profile keys go, the user's stay."""
        session.execute(
            update(PortRow)
            .where(PortRow.instance_id == instance_id)
            .values(
                instance_id=None,
                binding_host=None,
                vif_type=UNBOUND,
                vif_details={},
                binding_profile={},
                updated_at=self._clock(),
            )
            .execution_options(synchronize_session=False)
        )


def _user_profile(row: PortRow) -> dict[str, ProfileValue]:
    return {} if row.trusted is None else {"trusted": "true" if row.trusted else "false"}


def _port_devices(requests: Sequence[DeviceRequest], placement: Placement) -> dict[str, str]:
    """Port id -> the PCI address claimed for it."""
    found = {}
    for request, group in zip(requests, placement.devices, strict=True):
        if request.requester.kind is RequesterKind.PORT and group:
            found[request.requester.name] = str(group[0])
    return found


def _tag(tags: Mapping[str, Any], key: str) -> str | None:
    value = tags.get(key)
    return None if value is None else str(value)


def _bound_device(session: Session, host_id: str, address: str) -> BoundDevice:
    row = session.scalars(
        select(DeviceRow).where(DeviceRow.host_id == host_id, DeviceRow.address == address)
    ).one()
    mac_holder: DeviceRow | None = row
    if row.parent_address is not None:
        mac_holder = session.scalars(
            select(DeviceRow).where(
                DeviceRow.host_id == host_id, DeviceRow.address == row.parent_address
            )
        ).one_or_none()
    return BoundDevice(
        address=row.address,
        vendor_id=row.vendor_id,
        product_id=row.product_id,
        dev_type=DeviceType(row.dev_type),
        physical_network=_tag(row.tags, "physical_network"),
        vf_index=row.vf_index,
        mac_address=None if mac_holder is None else _tag(mac_holder.tags, "mac_address"),
    )


def _write_binding(session: Session, port_id: str, instance_id: str, binding: Binding) -> None:
    """Bind the port to the instance, unless another instance took it meanwhile (409)."""
    done = session.execute(
        update(PortRow)
        .where(PortRow.id == port_id, PortRow.instance_id.is_(None))
        .values(
            instance_id=instance_id,
            binding_host=binding.host,
            vif_type=binding.vif_type,
            vif_details=dict(binding.vif_details),
            binding_profile=dict(binding.profile),
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 1) != 1:
        raise PortInUse(f"port {port_id} was bound to another instance meanwhile", port=port_id)
