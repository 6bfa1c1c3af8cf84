"""A receiver whose answer head is oversized: the client's limits (a head of at most 64 KB, at most 100
header lines) end the attempt as a retryable failure, never a hang or a worker's memory filled."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from actionhooks.errors import TargetUnreachable
from tests.delivery.conformance import sample_batch
from tests.delivery.test_http import http
from tests.support.raw_answers import RawAnswerServer

Serve = Callable[..., RawAnswerServer]


HEADS = {
    "a 70 KB header line": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n",
    "101 header lines": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(101))
    + b"Content-Length: 0\r\n\r\n",
    "a 70 KB status line": b"HTTP/1.1 200 " + b"O" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("head", list(HEADS), ids=list(HEADS))
def test_an_oversized_answer_head_is_a_retryable_unreachable_receiver(raw_server: Serve, head: str) -> None:
    server = raw_server(HEADS[head])
    with http(server.url) as transport, pytest.raises(TargetUnreachable) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retryable
    assert server.requests == 1


def test_an_answer_head_just_inside_the_limits_is_a_success(raw_server: Serve) -> None:
    head = (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 60_000 + b"\r\n"
            + b"".join(b"X-H%d: v\r\n" % n for n in range(97)) + b"Content-Length: 2\r\n\r\nok")
    server = raw_server(head)
    with http(server.url) as transport:
        receipt = transport.send(sample_batch(1))
    assert receipt.status_code == 200
