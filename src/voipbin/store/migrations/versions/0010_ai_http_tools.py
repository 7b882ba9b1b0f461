"""AI HTTP tools: tools a customer defines for its AI, each a URL the platform calls.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ais', schema=None) as batch_op:
        batch_op.add_column(sa.Column('http_tools', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('ais', schema=None) as batch_op:
        batch_op.drop_column('http_tools')
