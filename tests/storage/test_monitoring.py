"""The reads behind /healthz and /metrics: held hooks by reason, and reads that never queue behind a writer.

SQLite lets one connection at a time hold the write lock (the router's and the group committer's
transactions); a health read that took it, or waited for it, would hold /healthz and every scrape
behind them, and block them in turn.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select

from actionhooks.storage.db import make_engine, read_only, session_factory
from actionhooks.storage.migrate import upgrade
from actionhooks.storage.monitoring import held_counts, measure, read_snapshot
from actionhooks.storage.tables import Hook, HookDeliveryState, Intake


def test_held_hooks_are_counted_by_reason_from_the_delivery_state_table(tmp_path: Path) -> None:
    table = HookDeliveryState.__table__
    engine = create_engine(f"sqlite:///{tmp_path / 'h.db'}")  # no foreign keys: the state rows alone
    table.create(engine)
    now = 1000.0
    with engine.begin() as connection:
        connection.execute(table.insert(), [
            {"hook_id": 1, "hold_until": now + 5, "paused_since": None, "gone_at": None},  # rate limited
            {"hook_id": 2, "hold_until": now - 5, "paused_since": None, "gone_at": None},  # free again
            {"hook_id": 3, "hold_until": now + 30, "paused_since": now - 300, "gone_at": None},  # paused
            {"hook_id": 4, "hold_until": 1e18, "paused_since": now - 300, "gone_at": now - 10},  # 410
        ])
    with engine.connect() as connection:
        assert held_counts(connection, now) == {"gone": 1, "paused": 1, "rate_limited": 1}
    engine.dispose()


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    """A migrated SQLite file with one active hook and one accepted request of 3 events."""
    path = tmp_path / "monitoring.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with session_factory(engine)() as session:
        session.add(Hook(account_id=1, name="h", actions=["click"], filters={}, custom_data={}, delivery={}))
        session.add(Intake(account_id=1, events=b"[]", n_events=3, created_at=1.0))
        session.commit()
    yield engine, path
    engine.dispose()


@pytest.fixture
def writer(sqlite_file: tuple[Engine, Path]) -> Iterator[sqlite3.Connection]:
    """Another connection to the file that never waits for the lock: BEGIN IMMEDIATE fails at once with
    "database is locked" while anyone else holds it."""
    connection = sqlite3.connect(sqlite_file[1], isolation_level=None)
    connection.execute("PRAGMA busy_timeout=0")
    yield connection
    connection.close()


def test_health_and_cluster_reads_do_not_wait_for_the_write_lock_another_connection_holds(
    sqlite_file: tuple[Engine, Path], writer: sqlite3.Connection,
) -> None:
    engine, _ = sqlite_file
    # Given another connection holding the write lock, in the middle of a write
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO intake (account_id, events, n_events, created_at) VALUES (1, x'5b5d', 5, 2.0)")
    # When /healthz and /metrics read (waiting for the lock would end in "database is locked", since the
    # writer lets go only after them)
    live = measure(engine, now=11.0)
    snapshot = read_snapshot(engine)
    # Then they answer with what was committed
    assert live.intake_events == 3
    assert live.oldest_queued_age_sec == 10.0
    assert snapshot.hooks_by_state == {"active": 1}
    writer.execute("COMMIT")  # and the writer still held its lock: its write commits
    assert measure(engine, now=11.0).intake_events == 8


def test_a_read_in_progress_does_not_take_the_write_lock_where_an_ordinary_connection_does(
    sqlite_file: tuple[Engine, Path], writer: sqlite3.Connection,
) -> None:
    engine, _ = sqlite_file
    # Given an ordinary engine connection in a transaction: it holds the write lock (BEGIN IMMEDIATE)
    with engine.connect() as ordinary:
        ordinary.execute(select(Intake.id))
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            writer.execute("BEGIN IMMEDIATE")
    # When a read-only connection (the one /healthz and /metrics read on) is in the middle of its reads
    with read_only(engine).connect() as reader:
        assert reader.scalar(select(Intake.n_events)) == 3
        # Then a writer takes the lock at once, and commits while the read goes on
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM intake")
        writer.execute("COMMIT")
        assert reader.scalar(select(Intake.n_events)) == 3  # the read keeps its snapshot
