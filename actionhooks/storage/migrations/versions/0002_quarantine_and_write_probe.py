"""quarantined events and the write probe

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('quarantined_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('event_id', sa.String(length=100), nullable=False),
    sa.Column('event', sa.LargeBinary(), nullable=False),
    sa.Column('accepted_at', sa.Float(), nullable=False),
    sa.Column('quarantined_at', sa.Float(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quarantined_events')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('quarantined_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantined_events_account_id'), ['account_id'], unique=False)

    op.create_table('write_probes',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('probed_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_write_probes'))
    )


def downgrade() -> None:
    op.drop_table('write_probes')
    with op.batch_alter_table('quarantined_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantined_events_account_id'))
    op.drop_table('quarantined_events')
