"""moto in server mode for the SQS and S3 transports: a real HTTP server on a free loopback port,
started once per test session from the test extras' `moto_server`, stopped by its pid.

Import the fixtures you use into your test module (`from tests.delivery.aws_fixtures import moto`).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.delivery.servers import free_port, stop_process, wait_for

__all__ = ["CREDENTIALS", "REGION", "aws", "moto", "moto_server"]

REGION = "us-east-1"
CREDENTIALS = {"access_key_id": "AKIDTEST", "secret_access_key": "moto-secret"}


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/moto-api/", timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


@contextmanager
def moto_server() -> Iterator[str]:
    """Endpoint URL of a moto server (http://127.0.0.1:<port>) started here and stopped by its pid on exit."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        pytest.fail("moto_server is missing: install the test extras (pip install -e '.[test]')")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _answers(url) or process.poll() is not None, "moto_server to answer", timeout=60, every=0.1)
        assert process.poll() is None, "moto_server exited at start"
        yield url
    finally:
        stop_process(process, grace=10)


@pytest.fixture(scope="session")
def moto() -> Iterator[str]:
    """Endpoint URL of a moto server for this test session."""
    with moto_server() as url:
        yield url


def aws(service: str, endpoint: str) -> Any:
    """The test's own boto3 client against moto."""
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id=CREDENTIALS["access_key_id"],
                        aws_secret_access_key=CREDENTIALS["secret_access_key"])
