"""Migrations: an empty database reaches the schema of tables.py, and migrating again changes nothing."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

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
