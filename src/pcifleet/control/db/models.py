"""The controller's tables, as typed SQLAlchemy 2 models.

Every controller table lives here so that the first migration creates them all and the
schema test can compare the migrated database with this metadata. Rows are storage, not
domain objects: the repositories (:mod:`pcifleet.control.db.repo`) convert them to the
frozen domain records (:class:`pcifleet.domain.device.Device`, :class:`NumaCell`, ...).

Conventions:

- ids are UUIDs as 36-character text (portable between SQLite and PostgreSQL);
- enumerations are stored as their string values (``DeviceState.AVAILABLE`` -> "available");
- structured values that the database never filters on are ``sqlalchemy.JSON``;
- times are timezone-aware UTC (:class:`UtcDateTime` restores the zone SQLite drops);
- ``hosts.generation`` is the compare-and-swap counter of everything that depends on a host's
  devices (reports, claims, frees); ``hosts.inventory_generation`` is the counter the agent
  echoes in its reports, so claims do not make an agent's report conflict.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: constraint names are explicit so migrations can refer to them on every backend
NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH: Final = 36
NAME_LENGTH: Final = 255
#: "dddd:bb:ss.f"
ADDRESS_LENGTH: Final = 12


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite keeps no zone, so values read back are naive; this type stores UTC and returns
    aware datetimes everywhere, so comparisons with ``clock()`` never mix naive and aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        dt.datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class HostRow(Timestamps, Base):
    """A hypervisor host, registered by its agent (idempotently, by name)."""

    __tablename__ = "hosts"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    #: compare-and-swap counter for every write that depends on the host's devices
    generation: Mapped[int] = mapped_column(Integer, default=0)
    #: counter the agent echoes when it reports; bumped by every accepted report
    inventory_generation: Mapped[int] = mapped_column(Integer, default=0)
    #: "up" or "down", driven by heartbeats
    state: Mapped[str] = mapped_column(String(16), default="down")
    #: operator switch: a disabled host receives no new guests whatever its heartbeat
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(Text, default=None)
    last_heartbeat: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_report: Mapped[dt.datetime | None] = mapped_column(default=None)
    #: NUMA cells: [{"id", "socket", "cpus": [..], "memory_mb", "hugepages": [{"size_kb",
    #: "total", "free"}]}]
    cells: Mapped[list[Any]] = mapped_column(default=list)
    cpu_allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    #: physical network -> PF netdev / address mapping (networking fills it)
    physnets: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: the libvirt URI other hosts reach this one's hypervisor at (live migration target);
    #: None until an agent registers with one
    hypervisor_uri: Mapped[str | None] = mapped_column(Text, default=None)

    __table_args__ = (Index(None, "state"),)


class DeviceRow(Base):
    """One PCI function of a host: discovery facts, spec tags and controller state."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    host_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("hosts.id", ondelete="CASCADE")
    )
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    vendor_id: Mapped[str] = mapped_column(String(4))
    product_id: Mapped[str] = mapped_column(String(4))
    #: DeviceType value: type-PCI, type-PF, type-VF, vdpa
    dev_type: Mapped[str] = mapped_column(String(8))
    class_code: Mapped[str | None] = mapped_column(String(6), default=None)
    numa_node: Mapped[int | None] = mapped_column(Integer, default=None)
    parent_address: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH), default=None)
    vf_index: Mapped[int | None] = mapped_column(Integer, default=None)
    driver: Mapped[str | None] = mapped_column(String(64), default=None)
    netdevs: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    resource_class: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    #: DeviceState value
    state: Mapped[str] = mapped_column(String(16), default="available")
    instance_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("instances.id", ondelete="SET NULL"), default=None
    )
    #: which request of the instance the device serves (DeviceRequest.request_id)
    request_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), default=None)
    #: the host stopped reporting the device while it was claimed/allocated: kept, flagged
    vanished: Mapped[bool] = mapped_column(Boolean, default=False)
    vanished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    #: human name (pci.ids) for display
    label: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("host_id", "address"),
        Index(None, "host_id", "state"),
        Index(None, "host_id", "parent_address"),
        Index(None, "state", "dev_type"),
        Index(None, "vendor_id", "product_id"),
        Index(None, "instance_id"),
    )


class DeviceGroupRow(Timestamps, Base):
    """A device group (Nova's alias): what a tenant may ask for, public or private."""

    __tablename__ = "device_groups"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    #: None: public; else only this project may request the group
    project: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    #: list of match dicts (Nova alias entries: vendor_id, product_id, device_type, tags...)
    spec: Mapped[list[Any]] = mapped_column(default=list)
    numa_policy: Mapped[str | None] = mapped_column(String(16), default=None)
    device_type: Mapped[str | None] = mapped_column(String(8), default=None)
    live_migratable: Mapped[bool | None] = mapped_column(Boolean, default=None)
    resource_class: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    traits: Mapped[list[Any]] = mapped_column(default=list)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    #: "api" or "config": where the group was defined
    source: Mapped[str] = mapped_column(String(16), default="api")

    __table_args__ = (Index(None, "project"),)


class GroupQuotaRow(Base):
    """Per-project limit on the number of devices of one group in use."""

    __tablename__ = "group_quotas"

    project: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    group_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("device_groups.id", ondelete="CASCADE"), primary_key=True
    )
    limit: Mapped[int] = mapped_column(Integer)


class FlavorRow(Timestamps, Base):
    """Guest shape: CPUs, memory, NUMA layout, pinning, huge pages and extra specs."""

    __tablename__ = "flavors"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    numa_nodes: Mapped[int] = mapped_column(Integer, default=1)
    #: "shared" or "dedicated"
    cpu_policy: Mapped[str] = mapped_column(String(16), default="shared")
    #: Nova's hw:mem_page_size value ("small", "large", "any", "2MB", "1048576"), None: none
    hugepage_size: Mapped[str | None] = mapped_column(String(16), default=None)
    extra_specs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str | None] = mapped_column(Text, default=None)


class InstanceRow(Timestamps, Base):
    """A guest: what it asked for, where it landed, which devices it holds."""

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    project: Mapped[str] = mapped_column(String(NAME_LENGTH))
    flavor_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("flavors.id", ondelete="SET NULL"), default=None
    )
    #: the flavor as it was at boot (flavors may change or go afterwards)
    flavor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    host_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("hosts.id", ondelete="SET NULL"), default=None
    )
    #: building, active, error, deleting, deleted
    state: Mapped[str] = mapped_column(String(16), default="building")
    #: why the instance is in error: {"code", "message", "details": [...]}
    fault: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: chosen cells, pinned CPUs, devices per request
    placement: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: the device requests, serialized
    requests: Mapped[list[Any]] = mapped_column(default=list)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    #: the host generation the scheduler's last claim or free of this guest moved its host to
    #: (other processes replay these to catch their host views up, see scheduler.delta)
    host_generation: Mapped[int | None] = mapped_column(Integer, default=None)

    __table_args__ = (
        Index(None, "project"),
        Index(None, "host_id"),
        Index(None, "state"),
    )


class MigrationRow(Timestamps, Base):
    """A live migration of an instance: where it goes and what it holds there meanwhile.

    While ``state`` is "migrating" the instance keeps its source placement (on its row) and
    also holds ``placement`` on ``dest_host_id`` (its devices there are allocated to it), so
    host views count both; complete moves the placement onto the instance, abort drops it.
    """

    __tablename__ = "migrations"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    instance_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("instances.id", ondelete="CASCADE")
    )
    source_host_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("hosts.id", ondelete="SET NULL"), default=None
    )
    dest_host_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("hosts.id", ondelete="SET NULL"), default=None
    )
    #: migrating, completed, aborted
    state: Mapped[str] = mapped_column(String(16), default="migrating")
    #: the destination placement (same format as ``instances.placement``)
    placement: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: the plan shown to the user: items, warnings
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reason: Mapped[str | None] = mapped_column(Text, default=None)

    __table_args__ = (
        Index(None, "instance_id"),
        Index(None, "dest_host_id", "state"),
    )


class TokenRow(Base):
    """An API bearer token, stored as its SHA-256 hex digest only."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: admin, member or agent
    role: Mapped[str] = mapped_column(String(16))
    #: the member's project
    project: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    #: the agent's host name
    host_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


# --- networking (migration 0002) -------------------------------------------------------------


class NetworkRow(Timestamps, Base):
    """A network: owned by a project, optionally shared with every project."""

    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    project: Mapped[str] = mapped_column(String(NAME_LENGTH))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (UniqueConstraint("project", "name"), Index(None, "name"))


class SegmentRow(Base):
    """One segment of a network (flat, vlan or vxlan), in the order the network lists them."""

    __tablename__ = "network_segments"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    network_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("networks.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    network_type: Mapped[str] = mapped_column(String(16))
    physical_network: Mapped[str | None] = mapped_column(String(64), default=None)
    segmentation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    #: "vlan:physnet1:100", "vxlan:5001", "flat:physnet1": one network per segment
    key: Mapped[str] = mapped_column(String(96), unique=True)

    __table_args__ = (Index(None, "network_id"),)


class PortRow(Timestamps, Base):
    """A port on a network: MAC, vnic type, VF-related settings and its binding."""

    __tablename__ = "ports"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    project: Mapped[str] = mapped_column(String(NAME_LENGTH))
    network_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("networks.id", ondelete="RESTRICT")
    )
    mac_address: Mapped[str] = mapped_column(String(17))
    vnic_type: Mapped[str] = mapped_column(String(32))
    trusted: Mapped[bool | None] = mapped_column(Boolean, default=None)
    port_security: Mapped[bool] = mapped_column(Boolean, default=True)
    propagate_uplink_status: Mapped[bool] = mapped_column(Boolean, default=False)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    #: {"max_kbps": int | None, "min_kbps": int | None}
    qos: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    numa_policy: Mapped[str | None] = mapped_column(String(16), default=None)
    #: the instance using the port (Neutron's device_id)
    instance_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("instances.id", ondelete="SET NULL"), default=None
    )
    binding_host: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    vif_type: Mapped[str] = mapped_column(String(32), default="unbound")
    vif_details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    binding_profile: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        UniqueConstraint("network_id", "mac_address"),
        Index(None, "project"),
        Index(None, "instance_id"),
    )
