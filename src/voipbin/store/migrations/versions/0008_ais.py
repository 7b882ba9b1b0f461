"""AIs: AI voice agent configurations.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ais',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('engine_model', sa.String(length=160), nullable=False),
    sa.Column('engine_key', sa.Text(), nullable=False),
    sa.Column('parameter', sa.JSON(), nullable=False),
    sa.Column('init_prompt', sa.Text(), nullable=False),
    sa.Column('tts_type', sa.String(length=32), nullable=False),
    sa.Column('tts_voice_id', sa.String(length=255), nullable=False),
    sa.Column('stt_type', sa.String(length=32), nullable=False),
    sa.Column('stt_language', sa.String(length=35), nullable=False),
    sa.Column('vad_config', sa.JSON(), nullable=False),
    sa.Column('tool_names', sa.JSON(), nullable=False),
    sa.Column('direct_hash', sa.String(length=32), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ais', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ais_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ais_tm_create'), ['tm_create'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ais', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ais_tm_create'))
        batch_op.drop_index(batch_op.f('ix_ais_customer_id'))

    op.drop_table('ais')
