"""Live migrations: one row per move, holding the destination placement while it runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("instance_id", sa.String(length=36), nullable=False),
        sa.Column("source_host_id", sa.String(length=36), nullable=True),
        sa.Column("dest_host_id", sa.String(length=36), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("placement", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.id"],
            name=op.f("fk_migrations_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["source_host_id"],
            ["hosts.id"],
            name=op.f("fk_migrations_source_host_id_hosts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["dest_host_id"],
            ["hosts.id"],
            name=op.f("fk_migrations_dest_host_id_hosts"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migrations")),
    )
    op.create_index(op.f("ix_migrations_instance_id"), "migrations", ["instance_id"], unique=False)
    op.create_index(
        op.f("ix_migrations_dest_host_id_state"),
        "migrations",
        ["dest_host_id", "state"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_migrations_dest_host_id_state"), table_name="migrations")
    op.drop_index(op.f("ix_migrations_instance_id"), table_name="migrations")
    op.drop_table("migrations")
