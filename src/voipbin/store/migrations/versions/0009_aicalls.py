"""AIcalls and AImessages: AI sessions on calls, and the turns of their conversations.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('aicalls',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('assistance_type', sa.String(length=16), nullable=False),
    sa.Column('assistance_id', sa.String(length=36), nullable=False),
    sa.Column('ai_engine_model', sa.String(length=160), nullable=False),
    sa.Column('ai_tts_type', sa.String(length=32), nullable=False),
    sa.Column('ai_tts_voice_id', sa.String(length=255), nullable=False),
    sa.Column('ai_stt_type', sa.String(length=32), nullable=False),
    sa.Column('ai_vad_config', sa.JSON(), nullable=False),
    sa.Column('parameter', sa.JSON(), nullable=False),
    sa.Column('activeflow_id', sa.String(length=36), nullable=False),
    sa.Column('reference_type', sa.String(length=16), nullable=False),
    sa.Column('reference_id', sa.String(length=36), nullable=False),
    sa.Column('confbridge_id', sa.String(length=36), nullable=False),
    sa.Column('current_member_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('stt_language', sa.String(length=35), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=False),
    sa.Column('tm_end', sa.DateTime(), nullable=True),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('aicalls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_aicalls_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_aicalls_reference_id'), ['reference_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_aicalls_tm_create'), ['tm_create'], unique=False)

    op.create_table('aimessages',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('aicall_id', sa.String(length=36), nullable=False),
    sa.Column('activeflow_id', sa.String(length=36), nullable=False),
    sa.Column('active_ai_id', sa.String(length=36), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('tool_calls', sa.JSON(), nullable=False),
    sa.Column('tool_call_id', sa.String(length=255), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('aimessages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_aimessages_aicall_id'), ['aicall_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_aimessages_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_aimessages_tm_create'), ['tm_create'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('aimessages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_aimessages_tm_create'))
        batch_op.drop_index(batch_op.f('ix_aimessages_customer_id'))
        batch_op.drop_index(batch_op.f('ix_aimessages_aicall_id'))

    op.drop_table('aimessages')
    with op.batch_alter_table('aicalls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_aicalls_tm_create'))
        batch_op.drop_index(batch_op.f('ix_aicalls_reference_id'))
        batch_op.drop_index(batch_op.f('ix_aicalls_customer_id'))

    op.drop_table('aicalls')
