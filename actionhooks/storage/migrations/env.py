"""Alembic environment: runs on the engine handed over by actionhooks.storage.migrate."""

from __future__ import annotations

from alembic import context

from actionhooks.storage.tables import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    # transactional_ddl: one transaction for the whole upgrade on SQLite too (Alembic's SQLite default
    # is one per migration), so roles starting together on a new file serialise on its write lock
    # (db.py begins IMMEDIATE) instead of two of them creating the same table between two migrations.
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=True, transactional_ddl=True
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":  # roles starting together migrate one at a time
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7130429)")
        context.run_migrations()
