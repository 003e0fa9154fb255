"""Instances: the host generation at which the scheduler last claimed or freed them.

Another controller process catches its cached view of a host up from the generation it knows
by replaying these claims and frees instead of reloading the whole host (see
:mod:`pcifleet.control.scheduler.delta`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("host_generation", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("host_generation")
