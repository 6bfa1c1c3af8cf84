"""Fixtures every test directory may use (a receiver; migrated SQLite and PostgreSQL databases);
directory-specific ones live in that directory's conftest.py. Also the one rule of running tests in
parallel (pytest-xdist, as `./scripts/test` does): a test marked `stops_shared_service` runs alone."""

from __future__ import annotations

import fcntl
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, MetaData
from sqlalchemy.orm import Session, sessionmaker

from actionhooks.storage.db import make_engine, session_factory
from actionhooks.storage.migrate import upgrade
from tests.support.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A fresh recording HTTP receiver on a free loopback port, stopped after the test."""
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this test session on the local PostgreSQL, dropped at the end."""
    name = f"actionhooks_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database: a new SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        sqlite = make_engine(f"sqlite:///{tmp_path / 'actionhooks.db'}")
        upgrade(sqlite)
        yield sqlite
        sqlite.dispose()
        return
    pg: Engine = request.getfixturevalue("postgres_engine")
    yield pg
    tables = MetaData()
    tables.reflect(pg)
    names = ", ".join(f'"{t.name}"' for t in tables.sorted_tables if t.name != "alembic_version")
    with pg.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


STOPS_SHARED_SERVICE = "stops_shared_service"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, `slow` tests go first, so no worker is left with a long one at the end."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    """Under xdist, hold the run's service lock from setup to teardown of every test: shared by all tests,
    exclusive for a test that stops a service every other test may be using (the shared RabbitMQ).

    Writer first: a turnstile taken before the lock makes new tests queue behind a waiting exclusive one.
    """
    if not hasattr(item.config, "workerinput"):  # one process runs every test in turn: nothing to share
        return (yield)
    folder = item.config._tmp_path_factory.getbasetemp().parent  # type: ignore[attr-defined]  # the run's
    exclusive = item.get_closest_marker(STOPS_SHARED_SERVICE) is not None
    with open(folder / "services.turnstile", "a") as turnstile, open(folder / "services.lock", "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        return (yield)  # closing the files releases both locks
