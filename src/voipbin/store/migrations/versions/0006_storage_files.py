"""Storage files: files a customer uploads (audio for the play action), kept in the data dir.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('storage_files',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('owner_type', sa.String(length=16), nullable=False),
    sa.Column('owner_id', sa.String(length=36), nullable=False),
    sa.Column('reference_type', sa.String(length=16), nullable=False),
    sa.Column('reference_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('filesize', sa.Integer(), nullable=False),
    sa.Column('uri_download', sa.Text(), nullable=False),
    sa.Column('tm_download_expire', sa.DateTime(), nullable=True),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.Column('tm_update', sa.DateTime(), nullable=True),
    sa.Column('tm_delete', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('storage_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storage_files_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_storage_files_tm_create'), ['tm_create'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('storage_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_storage_files_tm_create'))
        batch_op.drop_index(batch_op.f('ix_storage_files_customer_id'))

    op.drop_table('storage_files')
