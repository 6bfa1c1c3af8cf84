"""recent captures per source (console Sources page)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('source_captures',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('source_id', sa.BigInteger(), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('captured_at', sa.Float(), nullable=False),
    sa.Column('events', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source_captures'))
    )
    with op.batch_alter_table('source_captures', schema=None) as batch_op:
        batch_op.create_index('ix_source_captures_source_id_id', ['source_id', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('source_captures', schema=None) as batch_op:
        batch_op.drop_index('ix_source_captures_source_id_id')
    op.drop_table('source_captures')
