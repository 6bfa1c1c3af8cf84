"""Bring a database to the current schema with Alembic; every process role calls this at start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from actionhooks.settings import Settings
from actionhooks.storage.db import engine_from_settings

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Apply every pending migration (idempotent; concurrent starters serialise on the database)."""
    command.upgrade(alembic_config(engine), "head")


def prepare_storage(settings: Settings) -> None:
    """Create the data folder and migrate the database before any role uses it."""
    Path(settings.DATA_DIR).mkdir(parents=True, exist_ok=True)
    engine = engine_from_settings(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
