"""The delivery HTTP client (delivery/http1.py) against answers real receivers send and hostile ones:
keep-alive as the answer allows, every way an answer's body can end, bounded decoding, the pool's
connection limit, what a receiver may not make it reuse, and idle connections closed without waiting
for the next request."""

from __future__ import annotations

import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import httpx
import pytest

import actionhooks
from actionhooks.delivery.http1 import AnswerTimeout, HttpFailure, Pool, Target
from actionhooks.delivery.ssrf import connect_unguarded
from actionhooks.errors import TargetRejected, TargetUnreachable
from tests.delivery.conformance import sample_batch
from tests.delivery.servers import wait_for
from tests.delivery.test_http import http
from tests.support.raw_answers import RawAnswerServer
from tests.support.trickle import TrickleServer

Serve = Callable[..., RawAnswerServer]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def excerpts(url: str, sends: int, **fields: object) -> list[str]:
    """What `sends` batches sent one after the other on one transport got back."""
    with http(url, **fields) as transport:
        return [transport.send(sample_batch(1)).response_excerpt for _ in range(sends)]


def test_consecutive_requests_share_one_keep_alive_connection(raw_server: Serve) -> None:
    server = raw_server(OK, keep_open=True)
    assert excerpts(server.url, 5) == ["ok"] * 5
    assert (server.requests, server.connections) == (5, 1)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
    ids=["connection-close", "http-1.0"],
)
def test_an_answer_that_ends_keep_alive_gets_a_new_connection_next_time(raw_server: Serve, answer: bytes) -> None:
    server = raw_server(answer, keep_open=True)
    assert excerpts(server.url, 3) == ["ok"] * 3
    assert server.connections == 3


def test_a_connection_the_receiver_closed_while_idle_is_not_used_again(raw_server: Serve) -> None:
    server = raw_server(OK, keep_open=True)
    with http(server.url) as transport:
        assert transport.send(sample_batch(1)).status_code == 200
        server.drop_connections()  # the receiver's idle timeout
        assert transport.send(sample_batch(1)).status_code == 200  # no error: a fresh connection
    assert (server.requests, server.connections) == (2, 2)


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\naccept\r\n2\r\ned\r\n0\r\n\r\n", "accepted"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\naccepted, the body runs to the close", None),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\naccepted", "accepted"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Length: 8\r\n\r\naccept\xe9d",
         "acceptéd"),
    ],
    ids=["chunked", "until-close", "interim-100", "latin-1"],
)
def test_every_way_an_answer_body_can_end_is_read_whole(raw_server: Serve, answer: bytes, body: str | None) -> None:
    server = raw_server(answer)
    expected = body or answer.partition(b"\r\n\r\n")[2].decode()
    assert excerpts(server.url, 1, success_regex="^accept") == [expected]


def test_bytes_the_receiver_sends_after_its_answer_are_not_taken_for_the_next_answer(raw_server: Serve) -> None:
    # A second answer nobody asked for, glued to the first: the next request must not read it as its own.
    server = raw_server(OK + b"HTTP/1.1 500 Unasked\r\nContent-Length: 0\r\n\r\n", keep_open=True)
    assert excerpts(server.url, 2) == ["ok", "ok"]
    assert server.connections == 2


def test_a_malformed_answer_is_a_retryable_unreachable_receiver(raw_server: Serve) -> None:
    server = raw_server(b"HTTP/1.1 two hundred OK\r\n\r\n")
    with http(server.url) as transport, pytest.raises(TargetUnreachable) as caught:
        transport.send(sample_batch(1))
    assert caught.value.retryable
    assert "malformed answer" in caught.value.message


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_a_compressed_answer_is_decoded_and_a_bomb_is_cut_at_the_read_limit(raw_server: Serve, encoding: str) -> None:
    # 50 MB of text compressed to ~50 KB: decoding all of it would hold 50 MB per sending thread
    text = b"accepted " * 5_600_000
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[encoding]
    deflater = zlib.compressobj(9, zlib.DEFLATED, wbits)
    packed = deflater.compress(text) + deflater.flush()
    name = "gzip" if encoding == "gzip" else "deflate"
    server = raw_server(b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n%s"
                        % (name.encode(), len(packed), packed))
    assert len(packed) < 100_000
    [excerpt] = excerpts(server.url, 1, success_regex="^accepted accepted")
    assert excerpt.startswith("accepted accepted")
    assert len(excerpt) <= 2049


def test_a_body_that_claims_deflate_but_is_not_is_a_rejection_with_its_status(raw_server: Serve) -> None:
    server = raw_server(b"HTTP/1.1 202 Accepted\r\nContent-Encoding: deflate\r\nContent-Length: 9\r\n\r\nnot zlib!")
    with http(server.url) as transport, pytest.raises(TargetRejected) as caught:
        transport.send(sample_batch(1))
    assert caught.value.status_code == 202
    assert "not valid deflate" in caught.value.message


def test_the_pool_never_opens_more_connections_than_its_limit() -> None:
    # One connection, held by a request to a receiver that trickles its answer: a second request
    # waits for it and ends at its own deadline, without opening another connection.
    server = TrickleServer(mode="headers", every=0.2)
    target = Target.of(httpx.URL(server.url))
    try:
        with closing(Pool(connect_unguarded, max_connections=1, keepalive_expiry=4, read_limit=65536)) as pool:
            failures: list[HttpFailure] = []

            def hold() -> None:
                try:
                    pool.request("GET", target, {}, None, time.monotonic() + 2)
                except HttpFailure as exc:
                    failures.append(exc)

            held = threading.Thread(target=hold)
            held.start()
            deadline = time.monotonic() + 5
            while server.requests == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            with pytest.raises(AnswerTimeout, match="timed out waiting for a free connection"):
                pool.request("GET", target, {}, None, time.monotonic() + 0.3)
            held.join(10)
            assert not held.is_alive()
            assert isinstance(failures[0], AnswerTimeout)  # the trickle outlasted its own deadline
    finally:
        server.close()
    assert server.requests == 1


def pool(keepalive_expiry: float) -> Pool:
    return Pool(connect_unguarded, max_connections=4, keepalive_expiry=keepalive_expiry, read_limit=65536)


def post(to: Pool, server: RawAnswerServer) -> None:
    assert to.request("POST", Target.of(httpx.URL(server.url)), {}, b"[]", time.monotonic() + 2).body == b"ok"


def close_waits(port: int) -> int:
    """This machine's TCP sockets in CLOSE_WAIT towards 127.0.0.1:`port`: the receiver closed its end and
    we did not close ours (Linux: /proc/net/tcp, state 08; the remote address is the third column)."""
    rows = (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
    return sum(1 for row in rows if row[3] == "08" and int(row[2].rpartition(":")[2], 16) == port)


def test_prune_closes_an_idle_connection_past_its_expiry_without_another_request(raw_server: Serve) -> None:
    # A hook that stops getting events: its pool is never asked for another request
    server = raw_server(OK, keep_open=True)
    with closing(pool(keepalive_expiry=0)) as idle:
        post(idle, server)
        idle.prune()
        server.wait_for_client_closes(1)  # the receiver reads the end of the connection
        assert server.requests == 1


def test_prune_closes_an_idle_connection_the_receiver_closed_instead_of_leaving_it_in_close_wait(
    raw_server: Serve,
) -> None:
    server = raw_server(OK, keep_open=True)
    with closing(pool(keepalive_expiry=60)) as idle:
        post(idle, server)
        server.drop_connections()  # the receiver's own idle timeout, before ours
        wait_for(lambda: close_waits(server.port) == 1, "our end of the dropped connection in CLOSE_WAIT", 5)
        idle.prune()
        wait_for(lambda: close_waits(server.port) == 0, "our end of the dropped connection closed", 5)


def test_prune_keeps_an_idle_connection_within_its_expiry_for_the_next_request(raw_server: Serve) -> None:
    server = raw_server(OK, keep_open=True)
    with closing(pool(keepalive_expiry=60)) as idle:
        post(idle, server)
        idle.prune()
        post(idle, server)
    assert (server.requests, server.connections) == (2, 1)


def test_an_idle_connection_holds_a_few_kb_of_memory_not_a_receive_buffer(raw_server: Serve) -> None:
    # Up to 16 connections per hook and worker process, many hooks: the memory a worker holds for its
    # idle connections grows with every one of them, so each must be small. What counts is every
    # allocation made under actionhooks code (socket objects included), not the receiver's in this process.
    server = raw_server(OK, keep_open=True)
    pools = [pool(keepalive_expiry=60) for _ in range(9)]
    try:
        post(pools[0], server)  # what this sending thread makes once (its buffer, lazy imports) is not per connection
        only_ours = [tracemalloc.Filter(True, f"{Path(actionhooks.__file__).parent}/*", all_frames=True)]
        tracemalloc.start(40)
        try:
            before = tracemalloc.take_snapshot().filter_traces(only_ours)
            for each in pools[1:]:
                post(each, server)  # each pool keeps the connection idle after its answer
            after = tracemalloc.take_snapshot().filter_traces(only_ours)
        finally:
            tracemalloc.stop()
        held = sum(diff.size_diff for diff in after.compare_to(before, "filename"))
        assert server.connections == len(pools)
        assert held / (len(pools) - 1) < 8 * 1024, f"{held / (len(pools) - 1):,.0f} bytes per idle connection"
    finally:
        for each in pools:
            each.close()
