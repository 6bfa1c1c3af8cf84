"""hook delivery state: rate-limit bucket, pause and gone

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('hook_delivery_state',
    sa.Column('hook_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('tokens_at', sa.Float(), nullable=False),
    sa.Column('hold_until', sa.Float(), nullable=False),
    sa.Column('failing_since', sa.Float(), nullable=True),
    sa.Column('paused_since', sa.Float(), nullable=True),
    sa.Column('next_probe_at', sa.Float(), nullable=False),
    sa.Column('gone_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['hook_id'], ['hooks.id'], name=op.f('fk_hook_delivery_state_hook_id_hooks'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('hook_id', name=op.f('pk_hook_delivery_state'))
    )
    with op.batch_alter_table('hook_delivery_state', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hook_delivery_state_hold_until'), ['hold_until'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('hook_delivery_state', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hook_delivery_state_hold_until'))
    op.drop_table('hook_delivery_state')
