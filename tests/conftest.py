"""Fixtures every test directory may use; directory-specific ones live in that directory's conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A fresh recording HTTP receiver on a free loopback port, stopped after the test."""
    server = Receiver()
    try:
        yield server
    finally:
        server.close()
