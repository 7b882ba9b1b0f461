"""Recordings: a call recorded to WAV, with its file names.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recordings',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_type', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('activeflow_id', sa.String(length=36), nullable=False),
    sa.Column('reference_type', sa.String(length=16), nullable=False),
    sa.Column('reference_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('recording_name', sa.String(length=255), nullable=False),
    sa.Column('filenames', sa.JSON(), nullable=False),
    sa.Column('on_end_flow_id', sa.String(length=36), nullable=False),
    sa.Column('tm_start', sa.DateTime(), nullable=True),
    sa.Column('tm_end', sa.DateTime(), nullable=True),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_recordings_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_reference_id'), ['reference_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_recordings_tm_create'), ['tm_create'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_recordings_tm_create'))
        batch_op.drop_index(batch_op.f('ix_recordings_reference_id'))
        batch_op.drop_index(batch_op.f('ix_recordings_customer_id'))

    op.drop_table('recordings')
