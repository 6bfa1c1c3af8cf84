"""Migrations: an empty database reaches the schema of tables.py, and migrating again changes nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from actionhooks.storage.migrate import alembic_config, upgrade
from actionhooks.storage.tables import Base


def test_a_migrated_empty_database_matches_the_table_definitions(engine: Engine) -> None:
    # Given a database migrated from empty by the fixture, When alembic compares it with tables.py
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    # Then there is nothing left to migrate (what `alembic check` verifies)
    assert diff == []
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_upgrading_an_up_to_date_database_is_a_no_op(engine: Engine) -> None:
    upgrade(engine)
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == head


def test_event_blobs_are_compressed_with_lz4_on_postgresql(postgres_engine: Engine) -> None:
    # Given a PostgreSQL database migrated from empty, with an archive partition made afterwards
    # (SQLite compresses nothing)
    with postgres_engine.begin() as conn:
        conn.execute(text("CREATE TABLE lz4_probe_partition PARTITION OF event_archive FOR VALUES FROM (0) TO (1)"))
        # When the catalog is asked how every bytea column of the schema is compressed
        methods = dict(conn.execute(text(
            "SELECT a.attrelid::regclass::text || '.' || a.attname, a.attcompression FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE a.atttypid = 'bytea'::regtype AND NOT a.attisdropped AND c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        )).all())
        conn.execute(text("DROP TABLE lz4_probe_partition"))
    # Then every one is lz4, the archive's new partition too (pglz cost ~5x the CPU per event)
    assert "intake.events" in methods
    assert "lz4_probe_partition.events" in methods
    assert {name: method for name, method in methods.items() if method != "l"} == {}
