"""Fixtures of the delivery tests: a real HTTP receiver on loopback and settings that allow it.

Shared by every transport's tests: append new fixtures at the end, change nothing above them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from actionhooks.settings import Settings
from tests.support.raw_answers import RawAnswerServer


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


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawAnswerServer]]:
    """Starts a RawAnswerServer (its arguments are the server's); every one is closed after the test."""
    servers: list[RawAnswerServer] = []

    def start(*answers: bytes, keep_open: bool = False) -> RawAnswerServer:
        servers.append(RawAnswerServer(*answers, keep_open=keep_open))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
