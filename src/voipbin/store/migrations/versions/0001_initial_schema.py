"""Initial schema: customers, agents, access keys, signups, extensions, numbers, events, webhooks.

Revision ID: 0001
Revises: 
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accesskeys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('token_prefix', sa.String(length=16), nullable=False),
    sa.Column('tm_expire', sa.DateTime(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('accesskeys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accesskeys_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_accesskeys_tm_create'), ['tm_create'], unique=False)

    op.create_table('agents',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('username', sa.String(length=320), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('ring_method', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('permission', sa.Integer(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agents_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agents_tm_create'), ['tm_create'], unique=False)
        batch_op.create_index('ix_agents_username_live', ['username'], unique=True, sqlite_where=sa.text('tm_delete IS NULL'), postgresql_where=sa.text('tm_delete IS NULL'))

    op.create_table('customers',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('phone_number', sa.String(length=32), nullable=False),
    sa.Column('address', sa.Text(), nullable=False),
    sa.Column('webhook_method', sa.String(length=8), nullable=False),
    sa.Column('webhook_uri', sa.Text(), nullable=False),
    sa.Column('webhook_secret', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('email_verified', sa.Boolean(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_email_live', ['email'], unique=False, sqlite_where=sa.text('tm_delete IS NULL'), postgresql_where=sa.text('tm_delete IS NULL'))
        batch_op.create_index(batch_op.f('ix_customers_tm_create'), ['tm_create'], unique=False)

    op.create_table('events',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('topics', sa.JSON(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_tm_create'), ['tm_create'], unique=False)

    op.create_table('extensions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('extension', sa.String(length=64), nullable=False),
    sa.Column('password', sa.String(length=255), nullable=False),
    sa.Column('direct_hash', sa.String(length=32), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_extensions_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_extensions_customer_id_extension_live', ['customer_id', 'extension'], unique=True, sqlite_where=sa.text('tm_delete IS NULL'), postgresql_where=sa.text('tm_delete IS NULL'))
        batch_op.create_index(batch_op.f('ix_extensions_tm_create'), ['tm_create'], unique=False)

    op.create_table('numbers',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('call_flow_id', sa.String(length=36), nullable=False),
    sa.Column('message_flow_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('t38_enabled', sa.Boolean(), nullable=False),
    sa.Column('emergency_enabled', sa.Boolean(), nullable=False),
    sa.Column('tm_purchase', sa.DateTime(), nullable=True),
    sa.Column('tm_renew', sa.DateTime(), nullable=True),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_numbers_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_numbers_number_live', ['number'], unique=True, sqlite_where=sa.text('tm_delete IS NULL'), postgresql_where=sa.text('tm_delete IS NULL'))
        batch_op.create_index(batch_op.f('ix_numbers_tm_create'), ['tm_create'], unique=False)

    op.create_table('signups',
    sa.Column('temp_token', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('profile', sa.JSON(), nullable=False),
    sa.Column('code_hash', sa.String(length=255), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('tm_expire', sa.DateTime(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('temp_token')
    )
    with op.batch_alter_table('signups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signups_email'), ['email'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('last_status_code', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_next_attempt_at'), ['next_attempt_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_next_attempt_at'))
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_customer_id'))

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('signups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signups_email'))

    op.drop_table('signups')
    with op.batch_alter_table('numbers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_numbers_tm_create'))
        batch_op.drop_index('ix_numbers_number_live', sqlite_where=sa.text('tm_delete IS NULL'), postgresql_where=sa.text('tm_delete IS NULL'))
        batch_op.drop_index(batch_op.f('ix_numbers_customer_id'))

    op.drop_table('numbers')
    with op.batch_alter_table('extensions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_extensions_tm_create'))
        batch_op.drop_index('ix_extensions_customer_id_extension_live', sqlite_where=sa.text('tm_delete IS NULL'), postgresql_where=sa.text('tm_delete IS NULL'))
        batch_op.drop_index(batch_op.f('ix_extensions_customer_id'))

    op.drop_table('extensions')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_tm_create'))
        batch_op.drop_index(batch_op.f('ix_events_customer_id'))

    op.drop_table('events')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customers_tm_create'))
        batch_op.drop_index('ix_customers_email_live', sqlite_where=sa.text('tm_delete IS NULL'), postgresql_where=sa.text('tm_delete IS NULL'))

    op.drop_table('customers')
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_index('ix_agents_username_live', sqlite_where=sa.text('tm_delete IS NULL'), postgresql_where=sa.text('tm_delete IS NULL'))
        batch_op.drop_index(batch_op.f('ix_agents_tm_create'))
        batch_op.drop_index(batch_op.f('ix_agents_customer_id'))

    op.drop_table('agents')
    with op.batch_alter_table('accesskeys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accesskeys_tm_create'))
        batch_op.drop_index(batch_op.f('ix_accesskeys_customer_id'))

    op.drop_table('accesskeys')
