"""Security: JWTs that a password change revokes, and verified changes of a customer's email.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), nullable=False, server_default='0'))

    op.create_table('email_changes',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=36), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('tm_expire', sa.DateTime(), nullable=False),
    sa.Column('tm_create', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('email_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_changes_customer_id'), ['customer_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('email_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_changes_customer_id'))
    op.drop_table('email_changes')

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
