"""Several nodes per install: shared secrets (JWT signing, SIP nonces), the nodes with their
heartbeats, and the node that runs each call.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('platform_secrets',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=128), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('nodes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=8), nullable=False),
    sa.Column('sip_address', sa.String(length=255), nullable=False),
    sa.Column('api_url', sa.String(length=255), nullable=False),
    sa.Column('live_calls', sa.Integer(), nullable=False),
    sa.Column('tm_start', sa.DateTime(), nullable=False),
    sa.Column('tm_heartbeat', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nodes_tm_heartbeat'), ['tm_heartbeat'], unique=False)
    for table in ('calls', 'groupcalls'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('node_id', sa.String(length=32), nullable=False, server_default=''))
            batch_op.create_index(batch_op.f(f'ix_{table}_node_id'), ['node_id'], unique=False)


def downgrade() -> None:
    for table in ('groupcalls', 'calls'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_node_id'))
            batch_op.drop_column('node_id')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nodes_tm_heartbeat'))
    op.drop_table('nodes')
    op.drop_table('platform_secrets')
