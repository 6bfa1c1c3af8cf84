"""event archive and backfill jobs

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

PARTITIONS = 'actionhooks_archive'


def upgrade() -> None:
    op.create_table('event_archive',
    sa.Column('accepted_at', sa.Float(), nullable=False),
    sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('n_events', sa.Integer(), nullable=False),
    sa.Column('events', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('accepted_at', 'id', name=op.f('pk_event_archive')),
    postgresql_partition_by='RANGE (accepted_at)',
    sqlite_with_rowid=False
    )
    op.create_index('ix_event_archive_account', 'event_archive', ['account_id', 'accepted_at', 'id', 'n_events'],
                    unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        # Daily partitions are created ahead by the scheduler (storage/archive.py); the default one
        # takes what arrives before that (an API started without a scheduler), never failing a 202.
        op.execute(f'CREATE SCHEMA IF NOT EXISTS {PARTITIONS}')
        op.execute(f'CREATE TABLE {PARTITIONS}.event_archive_default PARTITION OF event_archive DEFAULT')

    op.create_table('backfills',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('hook_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger(), nullable=False),
    sa.Column('from_at', sa.Float(), nullable=False),
    sa.Column('to_at', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('cursor_at', sa.Float(), nullable=True),
    sa.Column('cursor_id', sa.BigInteger(), nullable=True),
    sa.Column('scanned', sa.BigInteger(), nullable=False),
    sa.Column('matched', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('lease_until', sa.Float(), nullable=False),
    sa.Column('touched_at', sa.Float(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['hook_id'], ['hooks.id'], name=op.f('fk_backfills_hook_id_hooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backfills')),
    sqlite_autoincrement=True
    )
    op.create_index('ix_backfills_hook', 'backfills', ['hook_id', 'state'], unique=False)
    op.create_index('ix_backfills_state', 'backfills', ['state'], unique=False)

    op.create_table('backfill_batches',
    sa.Column('delivery_id', sa.String(length=40), nullable=False),
    sa.Column('backfill_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('n_events', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['backfill_id'], ['backfills.id'], name=op.f('fk_backfill_batches_backfill_id_backfills'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('delivery_id', name=op.f('pk_backfill_batches'))
    )
    op.create_index(op.f('ix_backfill_batches_backfill_id'), 'backfill_batches', ['backfill_id'], unique=False)


def downgrade() -> None:
    op.drop_table('backfill_batches')
    op.drop_table('backfills')
    op.drop_table('event_archive')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'DROP SCHEMA IF EXISTS {PARTITIONS} CASCADE')
