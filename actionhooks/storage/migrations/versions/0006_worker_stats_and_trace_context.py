"""worker counters for /metrics, acceptance times and trace contexts through the pipeline

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('worker_stats',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('labels', sa.String(length=200), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', 'labels', 'shard', name=op.f('pk_worker_stats'))
    )
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trace_context', sa.String(length=64), nullable=True))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accepted_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('trace_context', sa.String(length=64), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accepted_at', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('trace_context', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('trace_context')
        batch_op.drop_column('accepted_at')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('trace_context')
        batch_op.drop_column('accepted_at')
    with op.batch_alter_table('intake', schema=None) as batch_op:
        batch_op.drop_column('trace_context')
    op.drop_table('worker_stats')
