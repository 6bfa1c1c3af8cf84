"""quarantined events indexed by when they were set aside (QUARANTINE_KEEP_HOURS expiry)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('quarantined_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantined_events_quarantined_at'), ['quarantined_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('quarantined_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantined_events_quarantined_at'))
