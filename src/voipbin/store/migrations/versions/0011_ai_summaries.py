"""AI summaries: a model's summary of a call's or a transcribe's transcript.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ai_summaries',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('activeflow_id', sa.String(length=36), nullable=False),
    sa.Column('on_end_flow_id', sa.String(length=36), nullable=False),
    sa.Column('reference_type', sa.String(length=16), nullable=False),
    sa.Column('reference_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('language', sa.String(length=35), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('transcribe_id', sa.String(length=36), nullable=False),
    sa.Column('lease_until', sa.DateTime(), nullable=True),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ai_summaries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ai_summaries_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ai_summaries_reference_id'), ['reference_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ai_summaries_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_ai_summaries_transcribe_id'), ['transcribe_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ai_summaries_tm_create'), ['tm_create'], unique=False)


def downgrade() -> None:
    op.drop_table('ai_summaries')
