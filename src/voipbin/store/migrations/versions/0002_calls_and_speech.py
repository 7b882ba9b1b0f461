"""Calls, groupcalls, flows, activeflows, transcribes, transcripts, speakings and providers.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('activeflows',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('flow_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reference_type', sa.String(length=16), nullable=False),
    sa.Column('reference_id', sa.String(length=36), nullable=False),
    sa.Column('current_action', sa.JSON(), nullable=False),
    sa.Column('executed_actions', sa.JSON(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('activeflows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_activeflows_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_activeflows_tm_create'), ['tm_create'], unique=False)

    op.create_table('calls',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_type', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('flow_id', sa.String(length=36), nullable=False),
    sa.Column('activeflow_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('master_call_id', sa.String(length=36), nullable=False),
    sa.Column('chained_call_ids', sa.JSON(), nullable=False),
    sa.Column('recording_id', sa.String(length=36), nullable=False),
    sa.Column('recording_ids', sa.JSON(), nullable=False),
    sa.Column('groupcall_id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('destination', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('action', sa.JSON(), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('mute_direction', sa.String(length=8), nullable=False),
    sa.Column('hangup_by', sa.String(length=8), nullable=False),
    sa.Column('hangup_reason', sa.String(length=16), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('tm_ringing', sa.DateTime(), nullable=True),
    sa.Column('tm_progressing', sa.DateTime(), nullable=True),
    sa.Column('tm_hangup', sa.DateTime(), nullable=True),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_calls_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_calls_tm_create'), ['tm_create'], unique=False)

    op.create_table('flows',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.Column('direct_hash', sa.String(length=32), nullable=False),
    sa.Column('on_complete_flow_id', sa.String(length=36), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('flows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_flows_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_flows_tm_create'), ['tm_create'], unique=False)

    op.create_table('groupcalls',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_type', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('flow_id', sa.String(length=36), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('destinations', sa.JSON(), nullable=False),
    sa.Column('master_call_id', sa.String(length=36), nullable=False),
    sa.Column('master_groupcall_id', sa.String(length=36), nullable=False),
    sa.Column('ring_method', sa.String(length=16), nullable=False),
    sa.Column('answer_method', sa.String(length=16), nullable=False),
    sa.Column('answer_call_id', sa.String(length=36), nullable=False),
    sa.Column('call_ids', sa.JSON(), nullable=False),
    sa.Column('answer_groupcall_id', sa.String(length=36), nullable=False),
    sa.Column('groupcall_ids', sa.JSON(), nullable=False),
    sa.Column('call_count', sa.Integer(), nullable=False),
    sa.Column('groupcall_count', sa.Integer(), nullable=False),
    sa.Column('dial_index', sa.Integer(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('groupcalls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_groupcalls_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_groupcalls_tm_create'), ['tm_create'], unique=False)

    op.create_table('providers',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('port', sa.Integer(), nullable=False),
    sa.Column('transport', sa.String(length=8), nullable=False),
    sa.Column('username', sa.String(length=255), nullable=False),
    sa.Column('password', sa.String(length=255), nullable=False),
    sa.Column('tech_prefix', sa.String(length=32), nullable=False),
    sa.Column('tech_postfix', sa.String(length=32), nullable=False),
    sa.Column('tech_headers', sa.JSON(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('providers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_providers_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_providers_tm_create'), ['tm_create'], unique=False)

    op.create_table('speakings',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('reference_type', sa.String(length=16), nullable=False),
    sa.Column('reference_id', sa.String(length=36), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('voice_id', sa.String(length=64), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('pod_id', sa.String(length=64), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('speakings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_speakings_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_speakings_reference_id'), ['reference_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_speakings_tm_create'), ['tm_create'], unique=False)

    op.create_table('transcribes',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('activeflow_id', sa.String(length=36), nullable=False),
    sa.Column('on_end_flow_id', sa.String(length=36), nullable=False),
    sa.Column('reference_type', sa.String(length=16), nullable=False),
    sa.Column('reference_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('transcribes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcribes_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_transcribes_reference_id'), ['reference_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_transcribes_tm_create'), ['tm_create'], unique=False)

    op.create_table('transcripts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('transcribe_id', sa.String(length=36), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('tm_transcript', sa.DateTime(), nullable=True),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('transcripts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcripts_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_transcripts_tm_create'), ['tm_create'], unique=False)
        batch_op.create_index(batch_op.f('ix_transcripts_transcribe_id'), ['transcribe_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('transcripts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transcripts_transcribe_id'))
        batch_op.drop_index(batch_op.f('ix_transcripts_tm_create'))
        batch_op.drop_index(batch_op.f('ix_transcripts_customer_id'))

    op.drop_table('transcripts')
    with op.batch_alter_table('transcribes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transcribes_tm_create'))
        batch_op.drop_index(batch_op.f('ix_transcribes_reference_id'))
        batch_op.drop_index(batch_op.f('ix_transcribes_customer_id'))

    op.drop_table('transcribes')
    with op.batch_alter_table('speakings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_speakings_tm_create'))
        batch_op.drop_index(batch_op.f('ix_speakings_reference_id'))
        batch_op.drop_index(batch_op.f('ix_speakings_customer_id'))

    op.drop_table('speakings')
    with op.batch_alter_table('providers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_providers_tm_create'))
        batch_op.drop_index(batch_op.f('ix_providers_customer_id'))

    op.drop_table('providers')
    with op.batch_alter_table('groupcalls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_groupcalls_tm_create'))
        batch_op.drop_index(batch_op.f('ix_groupcalls_customer_id'))

    op.drop_table('groupcalls')
    with op.batch_alter_table('flows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_flows_tm_create'))
        batch_op.drop_index(batch_op.f('ix_flows_customer_id'))

    op.drop_table('flows')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_tm_create'))
        batch_op.drop_index(batch_op.f('ix_calls_status'))
        batch_op.drop_index(batch_op.f('ix_calls_customer_id'))

    op.drop_table('calls')
    with op.batch_alter_table('activeflows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_activeflows_tm_create'))
        batch_op.drop_index(batch_op.f('ix_activeflows_customer_id'))

    op.drop_table('activeflows')
