"""Fixtures of the delivery tests: a real HTTP receiver on loopback and settings that allow it.

Shared by every transport's tests: append new fixtures at the end, change nothing above them.
"""

from __future__ import annotations

import socket

import pytest

from actionhooks.settings import Settings


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound then released), for unreachable targets."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def private_settings() -> Settings:
    """Settings that let delivery reach 127.0.0.1 (the SSRF guard is off), with a short HTTP timeout."""
    return Settings(HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_HTTP_TIMEOUT_SEC=2)
