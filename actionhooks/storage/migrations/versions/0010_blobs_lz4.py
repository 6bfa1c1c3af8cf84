"""event blobs compressed with lz4 on PostgreSQL

Every accepted event is written as part of a JSON blob three times on its way out (intake, the
batch window's outbox, the delivery batch) and read back each time; PostgreSQL compresses such a
value (over ~2 KB) with pglz by default, which cost ~1.1 CPU-µs per event per blob written and read,
against ~0.2 with lz4 (measured in the commit): a quarter of the database's CPU in bench/e2e_http.py.
Rows of these queue tables live for milliseconds, so the compression ratio matters less than its
cost. Only new values are affected; a server built without lz4 keeps pglz (the upgrade says so).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import logging

from alembic import op
from sqlalchemy.exc import DBAPIError

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BLOBS = (('intake', 'events'), ('outbox', 'events'), ('deliveries', 'events'), ('event_archive', 'events'),
         ('quarantined_events', 'event'))

log = logging.getLogger(__name__)


def _compress_with(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    # The setting does not recurse into existing partitions (new ones copy their parent's).
    partitions = bind.exec_driver_sql(
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'event_archive'::regclass").scalars().all()
    try:
        with bind.begin_nested():  # one savepoint: all or none
            for table, column in (*BLOBS, *((name, 'events') for name in partitions)):
                op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}')
    except DBAPIError as exc:  # a server built without lz4 (or before PostgreSQL 14)
        log.warning('event blobs keep the server default compression: %s', exc.orig)


def upgrade() -> None:
    _compress_with('lz4')


def downgrade() -> None:
    _compress_with('default')
