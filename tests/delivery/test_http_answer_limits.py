"""A receiver whose answer head is oversized: the framing's limits (a header line of at most 64 KB, at most
100 header lines) end the attempt as a retryable failure, never a hang or a worker's memory filled."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from actionhooks.errors import TargetUnreachable
from tests.delivery.conformance import sample_batch
from tests.delivery.test_http import http
from tests.support.trickle import read_request_head


class RawAnswerServer:
    """Answers every request on 127.0.0.1 with the given bytes, then closes; counts the requests."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                if read_request_head(conn) is None:
                    continue
                self.requests += 1
                with contextlib.suppress(OSError):  # the client gave up reading: what the test expects of it
                    conn.sendall(self.answer)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone would not)
        self._listener.close()
        self._thread.join(5)
        assert not self._thread.is_alive()


@pytest.fixture
def serve() -> Iterator[list[RawAnswerServer]]:
    servers: list[RawAnswerServer] = []
    yield servers
    for server in servers:
        server.close()


HEADS = {
    "a 70 KB header line": b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n",
    "101 header lines": b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % n for n in range(101))
    + b"Content-Length: 0\r\n\r\n",
    "a 70 KB status line": b"HTTP/1.1 200 " + b"O" * 70_000 + b"\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("head", list(HEADS), ids=list(HEADS))
def test_an_oversized_answer_head_is_a_retryable_unreachable_receiver(
    serve: list[RawAnswerServer], head: str
) -> None:
    server = RawAnswerServer(HEADS[head])
    serve.append(server)
    with http(server.url) as transport, pytest.raises(TargetUnreachable) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retryable
    assert server.requests == 1


def test_an_answer_head_just_inside_the_limits_is_a_success(serve: list[RawAnswerServer]) -> None:
    head = (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 60_000 + b"\r\n"
            + b"".join(b"X-H%d: v\r\n" % n for n in range(97)) + b"Content-Length: 2\r\n\r\nok")
    server = RawAnswerServer(head)
    serve.append(server)
    with http(server.url) as transport:
        receipt = transport.send(sample_batch(1))
    assert receipt.status_code == 200
