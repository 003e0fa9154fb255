"""Networking: networks, their segments and ports (with their binding).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 10:00:00.000000
"""

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _times() -> list[sa.Column[dt.datetime]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "networks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        *_times(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_networks")),
        sa.UniqueConstraint("project", "name", name=op.f("uq_networks_project_name")),
    )
    op.create_index(op.f("ix_networks_name"), "networks", ["name"], unique=False)
    op.create_table(
        "network_segments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("network_type", sa.String(length=16), nullable=False),
        sa.Column("physical_network", sa.String(length=64), nullable=True),
        sa.Column("segmentation_id", sa.Integer(), nullable=True),
        sa.Column("key", sa.String(length=96), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_network_segments_network_id_networks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_segments")),
        sa.UniqueConstraint("key", name=op.f("uq_network_segments_key")),
    )
    op.create_index(
        op.f("ix_network_segments_network_id"), "network_segments", ["network_id"], unique=False
    )
    op.create_table(
        "ports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("network_id", sa.String(length=36), nullable=False),
        sa.Column("mac_address", sa.String(length=17), nullable=False),
        sa.Column("vnic_type", sa.String(length=32), nullable=False),
        sa.Column("trusted", sa.Boolean(), nullable=True),
        sa.Column("port_security", sa.Boolean(), nullable=False),
        sa.Column("propagate_uplink_status", sa.Boolean(), nullable=False),
        sa.Column("admin_state_up", sa.Boolean(), nullable=False),
        sa.Column("qos", sa.JSON(), nullable=True),
        sa.Column("numa_policy", sa.String(length=16), nullable=True),
        sa.Column("instance_id", sa.String(length=36), nullable=True),
        sa.Column("binding_host", sa.String(length=255), nullable=True),
        sa.Column("vif_type", sa.String(length=32), nullable=False),
        sa.Column("vif_details", sa.JSON(), nullable=False),
        sa.Column("binding_profile", sa.JSON(), nullable=False),
        *_times(),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_ports_instance_id_instances"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name=op.f("fk_ports_network_id_networks"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ports")),
        sa.UniqueConstraint(
            "network_id", "mac_address", name=op.f("uq_ports_network_id_mac_address")
        ),
    )
    op.create_index(op.f("ix_ports_project"), "ports", ["project"], unique=False)
    op.create_index(op.f("ix_ports_instance_id"), "ports", ["instance_id"], unique=False)


def downgrade() -> None:
    op.drop_table("ports")
    op.drop_table("network_segments")
    op.drop_table("networks")
