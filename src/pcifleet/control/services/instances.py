"""Instances: boot, show, list, delete and explain — the controller's main use case.

A boot turns a flavor (and, with the networking issue, ports) into one
:class:`~pcifleet.domain.placement.InstanceRequest`: the flavor's size and NUMA wishes, one
device request per ``pci_passthrough:alias`` item, then one per port that needs a device
(:class:`PortRequest`, built as Nova builds port requests; ports resolved from the networking
API will be turned into the same objects). The scheduler then places and claims it in one
transaction (:mod:`pcifleet.control.scheduler.scheduler`); in that same transaction this
module checks the project's group quotas and writes the instance row:

- placed: ``active`` on its host, with its placement and device requests (the devices are
  allocated at once: the controller is the only claimer, there is no compute-side claim);
- nothing fits: ``error``, with a fault whose message says per filter stage and request why
  each host failed ("12 hosts: 3 down or disabled; 9 had fewer than 2 free VFs on physnet2
  on one NUMA node under policy required").

Errors before scheduling are raised and write nothing: an unknown flavor (404), a group the
project may not see (400, as Nova's "PCI alias ... is not defined"), a quota that would be
exceeded (403 ``pcifleet.quota.exceeded``), and a claim that kept losing its compare-and-swap
(409 ``pcifleet.concurrent_update``).

Visibility: members see and change only their project's instances (others' are "not
found"); admins see all; agents none. Delete frees the devices and their PF/VF relatives in
the same transaction as the instance row turns ``deleted``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from pcifleet.control.db.models import (
    NAME_LENGTH,
    Base,
    DeviceGroupRow,
    GroupQuotaRow,
    HostRow,
    InstanceRow,
)
from pcifleet.control.scheduler.codec import (
    LIVE_STATES,
    InstanceState,
    placement_from_json,
    placement_to_json,
    requests_from_json,
    requests_to_json,
)
from pcifleet.control.scheduler.hostload import HostHead
from pcifleet.control.scheduler.outcomes import Summary
from pcifleet.control.scheduler.scheduler import (
    Claimed,
    Explanation,
    Scheduler,
    SchedulerOptions,
)
from pcifleet.control.scheduler.weighers import Strategy
from pcifleet.control.services.flavors import FlavorService
from pcifleet.control.services.groups import GroupService
from pcifleet.control.services.principal import Principal
from pcifleet.control.settings import Settings
from pcifleet.domain.address import PciAddress
from pcifleet.domain.errors import InvalidInput, NotFound, NoValidHost, QuotaExceeded
from pcifleet.domain.flavor import Flavor, PageSizeKind, device_requests_for_flavor
from pcifleet.domain.placement import FitOptions, InstanceRequest, Placement, VfStrategy
from pcifleet.domain.request import DeviceRequest, NumaPolicy, RequesterKind
from pcifleet.domain.vnic import VnicType, port_device_request

Clock = Callable[[], dt.datetime]
#: the project of an admin's instances when none is given (the single-user demo)
DEFAULT_PROJECT: Final = "default"
#: huge page size used for ``hw:mem_page_size=large`` (the fit takes one explicit size)
LARGE_PAGE_KB: Final = 2048


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- what the service takes and returns -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortRequest:
    """A port of the guest, as the device request path needs it.

    The networking issue resolves real ports (``--nic net=...``/``port=...``) into these;
    until then callers (the replay benchmark, tests) build them directly.
    """

    port_id: str
    vnic_type: VnicType | str = VnicType.DIRECT
    #: the physical network of the network's flat/vlan segment (None: tunneled)
    physical_network: str | None = None
    #: the binding profile's ``trusted`` (None: not set)
    trusted: bool | None = None
    #: the port's own NUMA affinity policy (wins over the flavor's)
    numa_policy: NumaPolicy | None = None


class PortBinder(Protocol):
    """Binds ports inside the claim transaction and unbinds them in the release one (the
    networking service; None: ports are device requests only)."""

    def bind(
        self,
        session: Session,
        instance_id: str,
        host: HostHead,
        port_ids: Sequence[str],
        requests: Sequence[DeviceRequest],
        placement: Placement,
    ) -> None: ...

    def unbind(self, session: Session, instance_id: str) -> None: ...


class MigrationAborter(Protocol):
    """Aborts a live migration in flight inside the delete transaction (frees the
    destination devices); the migration service, set by the container."""

    def abort_in(self, session: Session, instance_id: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Fault:
    """Why an instance is in error: a stable code, a sentence, and one line per reason."""

    code: str
    message: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestDevices:
    """One device request of an instance and the devices it got (empty when not placed)."""

    request: DeviceRequest
    devices: tuple[PciAddress, ...]


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    id: str
    name: str
    project: str
    state: InstanceState
    flavor: str
    vcpus: int
    memory_mb: int
    host_id: str | None
    host: str | None
    placement: Placement | None
    requests: tuple[DeviceRequest, ...]
    fault: Fault | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None = None

    @property
    def devices(self) -> tuple[RequestDevices, ...]:
        """Each device request with its devices, in request order."""
        chosen = self.placement.devices if self.placement else ()
        return tuple(
            RequestDevices(r, chosen[i] if i < len(chosen) else ())
            for i, r in enumerate(self.requests)
        )

    @property
    def host_cells(self) -> tuple[int, ...]:
        return self.placement.host_cells if self.placement else ()


@dataclass(frozen=True, slots=True)
class ExplainResult:
    """A dry-run boot: the request as built, the host it would get, every host's outcome."""

    request: InstanceRequest
    flavor: str
    project: str
    explanation: Explanation

    @property
    def summary(self) -> Summary:
        return self.explanation.summary


# --- building requests -------------------------------------------------------------------------


def page_size_kb(flavor: Flavor) -> int | None:
    """The huge page size the fit must use (None: small pages or no wish)."""
    size = flavor.page_size
    if size is None or size in (PageSizeKind.SMALL, PageSizeKind.ANY):
        return None
    if size is PageSizeKind.LARGE:
        return LARGE_PAGE_KB
    assert isinstance(size, int)
    return None if size <= 4 else size


def instance_request(
    flavor: Flavor,
    device_requests: Sequence[DeviceRequest],
    instance_id: str = "",
) -> InstanceRequest:
    return InstanceRequest(
        vcpus=flavor.vcpus,
        memory_mb=flavor.memory_mb,
        numa_nodes=flavor.numa_nodes,
        cpu_policy=flavor.cpu_policy,
        hugepage_size_kb=page_size_kb(flavor),
        device_requests=tuple(device_requests),
        numa_policy=flavor.pci_numa_policy,
        instance_id=instance_id,
    )


def port_requests(ports: Sequence[PortRequest]) -> tuple[DeviceRequest, ...]:
    """The device requests of the ports that need a device, in port order."""
    found = []
    for port in ports:
        request = port_device_request(
            port.vnic_type, port.physical_network, port.trusted, port.port_id, port.numa_policy
        )
        if request is not None:
            found.append(request)
    return tuple(found)


def _flavor_json(flavor: Flavor) -> dict[str, Any]:
    return {
        "name": flavor.name,
        "vcpus": flavor.vcpus,
        "memory_mb": flavor.memory_mb,
        "extra_specs": dict(flavor.extra_specs),
    }


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_LENGTH:
        raise InvalidInput(
            f"instance name: must be 1..{NAME_LENGTH} characters, not blank",
            field="name",
            rule="length",
        )


# --- the claim transaction's instance part ----------------------------------------------------


class _BootWriter:
    """Quota check and instance row, inside the scheduler's claim transaction."""

    def __init__(
        self,
        instance_id: str,
        name: str,
        project: str,
        flavor_id: str | None,
        flavor: Flavor,
        request: InstanceRequest,
        now: dt.datetime,
        binder: PortBinder | None = None,
        port_ids: Sequence[str] = (),
        quota_groups: frozenset[str] | None = None,
    ) -> None:
        #: the groups the project has a quota on (None: unknown, check every group)
        self.quota_groups = quota_groups
        self.binder = binder
        self.port_ids = tuple(port_ids)
        self.instance_id = instance_id
        self.name = name
        self.project = project
        self.flavor_id = flavor_id
        self.flavor = flavor
        self.request = request
        self.now = now

    def check(self, session: Session) -> None:
        wanted: dict[str, int] = {}
        for r in self.request.device_requests:
            if r.requester.kind is RequesterKind.GROUP:
                wanted[r.requester.name] = wanted.get(r.requester.name, 0) + r.count
        if self.quota_groups is not None:
            wanted = {name: n for name, n in wanted.items() if name in self.quota_groups}
        if wanted:
            check_quotas(session, self.project, wanted)

    def _insert(self, session: Session, **values: Any) -> None:
        session.connection().execute(
            _INSERT,
            dict(
                id=self.instance_id,
                name=self.name,
                project=self.project,
                flavor_id=self.flavor_id,
                flavor=_flavor_json(self.flavor),
                requests=requests_to_json(self.request.device_requests),
                generation=0,
                created_at=self.now,
                updated_at=self.now,
                deleted_at=None,
                **values,
            ),
        )

    def placed(self, session: Session, host: HostHead, placement: Placement) -> bool:
        self._insert(
            session,
            state=InstanceState.ACTIVE.value,
            host_id=host.id,
            placement=placement_to_json(placement),
            fault=None,
            host_generation=host.generation,  # the claim's event (scheduler.delta)
        )
        if self.binder is not None and self.port_ids:
            self.binder.bind(
                session,
                self.instance_id,
                host,
                self.port_ids,
                self.request.device_requests,
                placement,
            )
        return True

    def unplaced(self, session: Session, summary: Summary) -> None:
        self._insert(
            session,
            state=InstanceState.ERROR.value,
            host_id=None,
            placement=None,
            fault=_fault_json(no_valid_host(summary)),
        )


#: built once (Core): every boot writes one instance row
_INSERT = insert(Base.metadata.tables["instances"])


def no_valid_host(summary: Summary) -> Fault:
    return Fault(
        NoValidHost.code,
        f"No valid host was found. {summary.sentence}",
        summary.details(),
    )


def _fault_json(fault: Fault) -> dict[str, Any]:
    return {"code": fault.code, "message": fault.message, "details": list(fault.details)}


def _fault_from_json(raw: Mapping[str, Any] | None) -> Fault | None:
    if not raw:
        return None
    return Fault(
        str(raw.get("code", "")),
        str(raw.get("message", "")),
        tuple(str(line) for line in raw.get("details", ())),
    )


def check_quotas(session: Session, project: str, wanted: Mapping[str, int]) -> None:
    """Refuse when ``project`` would use more devices of a group than its quota allows.

    The quota rows are locked (PostgreSQL) so two boots of one project cannot both pass the
    check on the same usage; SQLite transactions are exclusive already.
    """
    rows = session.execute(
        select(DeviceGroupRow.name, GroupQuotaRow.limit)
        .select_from(GroupQuotaRow)
        .join(DeviceGroupRow, DeviceGroupRow.id == GroupQuotaRow.group_id)
        .where(GroupQuotaRow.project == project, DeviceGroupRow.name.in_(list(wanted)))
        .with_for_update(of=GroupQuotaRow)
    )
    limits = {str(name): int(limit) for name, limit in rows}
    if not limits:
        return
    used = group_usage(session, project, limits)
    for name, limit in sorted(limits.items()):
        if used.get(name, 0) + wanted[name] > limit:
            raise QuotaExceeded(
                f"project {project} uses {used.get(name, 0)} devices of group {name} and asks "
                f"for {wanted[name]} more; its quota is {limit}",
                project=project,
                group=name,
                limit=limit,
            )


def group_usage(session: Session, project: str, groups: Mapping[str, int]) -> dict[str, int]:
    """Devices of each group held by the project's live instances (from their requests)."""
    used: dict[str, int] = {}
    rows = session.scalars(
        select(InstanceRow.requests).where(
            InstanceRow.project == project,
            InstanceRow.state.in_(LIVE_STATES),
            InstanceRow.host_id.is_not(None),
        )
    )
    for raw in rows:
        for item in raw or ():
            requester = item.get("requester", {})
            name = requester.get("name")
            if requester.get("kind") == RequesterKind.GROUP.value and name in groups:
                used[name] = used.get(name, 0) + int(item.get("count", 0))
    return used


# --- the service -------------------------------------------------------------------------------


class InstanceService:
    #: aborts a migration in flight when its guest is deleted (set by the container)
    migration_aborter: MigrationAborter | None = None

    def __init__(
        self,
        sessions: sessionmaker[Session],
        flavors: FlavorService,
        groups: GroupService,
        scheduler: Scheduler,
        clock: Clock = utc_now,
        binder: PortBinder | None = None,
    ) -> None:
        #: binds and unbinds ports (set by the container once the networking service exists)
        self.binder = binder
        self._sessions = sessions
        self._flavors = flavors
        self._groups = groups
        self.scheduler = scheduler
        self._clock = clock

    def _project(self, who: Principal, project: str | None) -> str:
        chosen = project or who.project or DEFAULT_PROJECT
        who.require_project(chosen, "booting an instance")
        return chosen

    def build_request(
        self,
        flavor: Flavor,
        project: str,
        ports: Sequence[PortRequest] = (),
        instance_id: str = "",
    ) -> InstanceRequest:
        """The instance request of a flavor and ports for ``project`` (groups as it sees them)."""
        names = [g.name for g in flavor.device_groups]
        groups = self._groups.visible_groups(project, need=names) if names else {}
        requests = device_requests_for_flavor(flavor, groups, project)
        return instance_request(flavor, (*requests, *port_requests(ports)), instance_id)

    def boot(
        self,
        who: Principal,
        name: str,
        flavor: str,
        *,
        project: str | None = None,
        ports: Sequence[PortRequest] = (),
    ) -> InstanceRecord:
        """Place and claim a new instance; it is ``active``, or ``error`` with a fault."""
        who.require_user("booting an instance")
        _check_name(name)
        chosen_project = self._project(who, project)
        flavor_record = self._flavors.get(flavor)
        instance_id = str(uuid.uuid4())
        request = self.build_request(flavor_record.flavor, chosen_project, ports, instance_id)
        port_ids = tuple(p.port_id for p in ports)
        return self._claim(
            name, chosen_project, flavor_record.id, flavor_record.flavor, request, port_ids
        )

    def boot_request(
        self,
        who: Principal,
        name: str,
        flavor: Flavor,
        request: InstanceRequest,
        *,
        project: str | None = None,
    ) -> InstanceRecord:
        """Place a prebuilt request (admin only: group visibility is the caller's business).

        For tools that build requests themselves (the workload replay reuses Nova's request
        ids); ``request.instance_id`` is used when set. ``flavor`` is recorded on the instance.
        """
        who.require_admin("booting a prebuilt request")
        _check_name(name)
        chosen_project = self._project(who, project)
        if not request.instance_id:
            request = replace(request, instance_id=str(uuid.uuid4()))
        return self._claim(name, chosen_project, None, flavor, request)

    def _claim(
        self,
        name: str,
        project: str,
        flavor_id: str | None,
        flavor: Flavor,
        request: InstanceRequest,
        port_ids: Sequence[str] = (),
    ) -> InstanceRecord:
        now = self._clock()
        writer = _BootWriter(
            request.instance_id,
            name,
            project,
            flavor_id,
            flavor,
            request,
            now,
            self.binder,
            port_ids,
            self._groups.quota_groups(project),
        )
        result = self.scheduler.claim(request, writer)
        claimed = result if isinstance(result, Claimed) else None
        return InstanceRecord(
            id=request.instance_id,
            name=name,
            project=project,
            state=InstanceState.ACTIVE if claimed else InstanceState.ERROR,
            flavor=flavor.name,
            vcpus=flavor.vcpus,
            memory_mb=flavor.memory_mb,
            host_id=claimed.host.id if claimed else None,
            host=claimed.host.name if claimed else None,
            placement=claimed.placement if claimed else None,
            requests=request.device_requests,
            fault=None if isinstance(result, Claimed) else no_valid_host(result.summary),
            created_at=now,
            updated_at=now,
        )

    def explain(
        self,
        who: Principal,
        flavor: str,
        *,
        project: str | None = None,
        ports: Sequence[PortRequest] = (),
        examples: int | None = None,
    ) -> ExplainResult:
        """What a boot would get now, and every host's outcome; claims nothing."""
        who.require_user("explaining a boot")
        chosen_project = self._project(who, project)
        flavor_record = self._flavors.get(flavor)
        request = self.build_request(flavor_record.flavor, chosen_project, ports)
        explanation = self.scheduler.explain(request, examples)
        return ExplainResult(request, flavor_record.name, chosen_project, explanation)

    # -- reads ------------------------------------------------------------------------------

    def show(self, who: Principal, instance_id: str) -> InstanceRecord:
        who.require_user("showing an instance")
        with self._sessions() as session:
            row, host = _visible(session, who, instance_id)
            return _record(row, host)

    def list(
        self,
        who: Principal,
        *,
        project: str | None = None,
        include_deleted: bool = False,
        limit: int | None = None,
    ) -> list[InstanceRecord]:
        """Instances the caller may see, oldest first; members only their project's."""
        who.require_user("listing instances")
        scope = project if who.is_admin else who.project
        if project is not None and not who.is_admin and project != who.project:
            return []
        query = (
            select(InstanceRow, HostRow.name)
            .outerjoin(HostRow, HostRow.id == InstanceRow.host_id)
            .order_by(InstanceRow.created_at, InstanceRow.id)
            .limit(limit)
        )
        if scope is not None:
            query = query.where(InstanceRow.project == scope)
        if not include_deleted:
            query = query.where(InstanceRow.state != InstanceState.DELETED.value)
        with self._sessions() as session:
            return [_record(row, host) for row, host in session.execute(query)]

    def count(self, state: InstanceState | None = None) -> int:
        with self._sessions() as session:
            query = select(func.count()).select_from(InstanceRow)
            if state is not None:
                query = query.where(InstanceRow.state == state.value)
            return int(session.scalar(query) or 0)

    # -- delete -----------------------------------------------------------------------------

    def delete(self, who: Principal, instance_id: str) -> InstanceRecord:
        """Free the instance's devices (and their relatives) and mark it deleted."""
        who.require_user("deleting an instance")
        with self._sessions() as session:
            row, _ = _visible(session, who, instance_id)
            host_id, state = row.host_id, row.state
        if state == InstanceState.DELETED.value:
            return self.show(who, instance_id)
        now = self._clock()

        def finish(session: Session) -> None:
            if self.migration_aborter is not None:
                self.migration_aborter.abort_in(session, instance_id, "instance deleted")
            if self.binder is not None:
                self.binder.unbind(session, instance_id)
            session.execute(
                update(InstanceRow)
                .where(InstanceRow.id == instance_id)
                .values(state=InstanceState.DELETED.value, deleted_at=now, updated_at=now)
                .execution_options(synchronize_session=False)
            )

        if host_id is not None and state in LIVE_STATES:
            self.scheduler.release(host_id, instance_id, finish)
        else:
            with self._sessions.begin() as session:
                finish(session)
        return self.show(who, instance_id)


def _visible(session: Session, who: Principal, instance_id: str) -> tuple[InstanceRow, str | None]:
    found = session.execute(
        select(InstanceRow, HostRow.name)
        .outerjoin(HostRow, HostRow.id == InstanceRow.host_id)
        .where(InstanceRow.id == instance_id)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if found is None or not (who.is_admin or who.project == found[0].project):
        raise NotFound(f"instance {instance_id!r} not found", kind="instance", id=instance_id)
    return found[0], found[1]


def _record(row: InstanceRow, host: str | None) -> InstanceRecord:
    flavor = row.flavor or {}
    return InstanceRecord(
        id=row.id,
        name=row.name,
        project=row.project,
        state=InstanceState(row.state),
        flavor=str(flavor.get("name", "")),
        vcpus=int(flavor.get("vcpus", 0)),
        memory_mb=int(flavor.get("memory_mb", 0)),
        host_id=row.host_id,
        host=host,
        placement=None if row.placement is None else placement_from_json(row.id, row.placement),
        requests=requests_from_json(row.requests or ()),
        fault=_fault_from_json(row.fault),
        created_at=row.created_at,
        updated_at=row.updated_at,
        deleted_at=row.deleted_at,
    )


def instance_service(
    sessions: sessionmaker[Session],
    settings: Settings,
    flavors: FlavorService,
    groups: GroupService,
    options: SchedulerOptions | None = None,
) -> InstanceService:
    """The instance use case with its own scheduler (one per process), from the settings."""
    chosen = options or SchedulerOptions(
        strategy=Strategy(settings.weigher),
        fit=FitOptions(vf_strategy=VfStrategy(settings.vf_strategy)),
        claim_retries=settings.claim_retries,
        subset_size=settings.host_subset_size,
    )
    return InstanceService(sessions, flavors, groups, Scheduler(sessions, chosen))
