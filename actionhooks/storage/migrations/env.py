"""Alembic environment: runs on the engine handed over by actionhooks.storage.migrate."""

from __future__ import annotations

from alembic import context

from actionhooks.storage.tables import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":  # roles starting together migrate one at a time
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7130429)")
        context.run_migrations()
