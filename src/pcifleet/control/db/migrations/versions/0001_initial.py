"""Initial schema: every controller table.

Hosts, devices, device groups and their quotas, flavors, instances and API tokens, as in
``pcifleet.control.db.models`` (the schema test checks that they match).

Revision ID: 0001
Revises:
Create Date: 2026-11-21 17:53:14.113752
"""

from collections.abc import Sequence
from typing import Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('device_groups',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('project', sa.String(length=255), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('numa_policy', sa.String(length=16), nullable=True),
    sa.Column('device_type', sa.String(length=8), nullable=True),
    sa.Column('live_migratable', sa.Boolean(), nullable=True),
    sa.Column('resource_class', sa.String(length=255), nullable=True),
    sa.Column('traits', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device_groups')),
    sa.UniqueConstraint('name', name=op.f('uq_device_groups_name'))
    )
    op.create_index(op.f('ix_device_groups_project'), 'device_groups', ['project'], unique=False)
    op.create_table('flavors',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('vcpus', sa.Integer(), nullable=False),
    sa.Column('memory_mb', sa.Integer(), nullable=False),
    sa.Column('numa_nodes', sa.Integer(), nullable=False),
    sa.Column('cpu_policy', sa.String(length=16), nullable=False),
    sa.Column('hugepage_size', sa.String(length=16), nullable=True),
    sa.Column('extra_specs', sa.JSON(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flavors')),
    sa.UniqueConstraint('name', name=op.f('uq_flavors_name'))
    )
    op.create_table('hosts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('inventory_generation', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('disabled_reason', sa.Text(), nullable=True),
    sa.Column('last_heartbeat', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_report', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cells', sa.JSON(), nullable=False),
    sa.Column('cpu_allocation_ratio', sa.Float(), nullable=False),
    sa.Column('physnets', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hosts')),
    sa.UniqueConstraint('name', name=op.f('uq_hosts_name'))
    )
    op.create_index(op.f('ix_hosts_state'), 'hosts', ['state'], unique=False)
    op.create_table('tokens',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('project', sa.String(length=255), nullable=True),
    sa.Column('host_name', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_tokens_token_hash'))
    )
    op.create_table('group_quotas',
    sa.Column('project', sa.String(length=255), nullable=False),
    sa.Column('group_id', sa.String(length=36), nullable=False),
    sa.Column('limit', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['group_id'], ['device_groups.id'], name=op.f('fk_group_quotas_group_id_device_groups'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project', 'group_id', name=op.f('pk_group_quotas'))
    )
    op.create_table('instances',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('project', sa.String(length=255), nullable=False),
    sa.Column('flavor_id', sa.String(length=36), nullable=True),
    sa.Column('flavor', sa.JSON(), nullable=False),
    sa.Column('host_id', sa.String(length=36), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('fault', sa.JSON(), nullable=True),
    sa.Column('placement', sa.JSON(), nullable=True),
    sa.Column('requests', sa.JSON(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['flavor_id'], ['flavors.id'], name=op.f('fk_instances_flavor_id_flavors'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_instances_host_id_hosts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_instances'))
    )
    op.create_index(op.f('ix_instances_host_id'), 'instances', ['host_id'], unique=False)
    op.create_index(op.f('ix_instances_project'), 'instances', ['project'], unique=False)
    op.create_index(op.f('ix_instances_state'), 'instances', ['state'], unique=False)
    op.create_table('devices',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('host_id', sa.String(length=36), nullable=False),
    sa.Column('address', sa.String(length=12), nullable=False),
    sa.Column('vendor_id', sa.String(length=4), nullable=False),
    sa.Column('product_id', sa.String(length=4), nullable=False),
    sa.Column('dev_type', sa.String(length=8), nullable=False),
    sa.Column('class_code', sa.String(length=6), nullable=True),
    sa.Column('numa_node', sa.Integer(), nullable=True),
    sa.Column('parent_address', sa.String(length=12), nullable=True),
    sa.Column('vf_index', sa.Integer(), nullable=True),
    sa.Column('driver', sa.String(length=64), nullable=True),
    sa.Column('netdevs', sa.JSON(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('resource_class', sa.String(length=255), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('instance_id', sa.String(length=36), nullable=True),
    sa.Column('request_id', sa.String(length=36), nullable=True),
    sa.Column('vanished', sa.Boolean(), nullable=False),
    sa.Column('vanished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('label', sa.String(length=255), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['hosts.id'], name=op.f('fk_devices_host_id_hosts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['instance_id'], ['instances.id'], name=op.f('fk_devices_instance_id_instances'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_devices')),
    sa.UniqueConstraint('host_id', 'address', name=op.f('uq_devices_host_id_address'))
    )
    op.create_index(op.f('ix_devices_host_id_parent_address'), 'devices', ['host_id', 'parent_address'], unique=False)
    op.create_index(op.f('ix_devices_host_id_state'), 'devices', ['host_id', 'state'], unique=False)
    op.create_index(op.f('ix_devices_instance_id'), 'devices', ['instance_id'], unique=False)
    op.create_index(op.f('ix_devices_state_dev_type'), 'devices', ['state', 'dev_type'], unique=False)
    op.create_index(op.f('ix_devices_vendor_id_product_id'), 'devices', ['vendor_id', 'product_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index(op.f('ix_devices_vendor_id_product_id'), table_name='devices')
    op.drop_index(op.f('ix_devices_state_dev_type'), table_name='devices')
    op.drop_index(op.f('ix_devices_instance_id'), table_name='devices')
    op.drop_index(op.f('ix_devices_host_id_state'), table_name='devices')
    op.drop_index(op.f('ix_devices_host_id_parent_address'), table_name='devices')
    op.drop_table('devices')
    op.drop_index(op.f('ix_instances_state'), table_name='instances')
    op.drop_index(op.f('ix_instances_project'), table_name='instances')
    op.drop_index(op.f('ix_instances_host_id'), table_name='instances')
    op.drop_table('instances')
    op.drop_table('group_quotas')
    op.drop_table('tokens')
    op.drop_index(op.f('ix_hosts_state'), table_name='hosts')
    op.drop_table('hosts')
    op.drop_table('flavors')
    op.drop_index(op.f('ix_device_groups_project'), table_name='device_groups')
    op.drop_table('device_groups')
