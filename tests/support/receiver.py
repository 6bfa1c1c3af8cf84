"""A recording HTTP receiver on loopback, shared by the delivery and end-to-end tests."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class Reply:
    """What the receiver answers; `delay` holds the answer back (to provoke client timeouts)."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Receiver:
    """A threaded HTTP/1.1 server on 127.0.0.1 with keep-alive that records every request.

    Answers come from `script` (one per request, first in first out) and then `default`. With `tls` (a
    server context holding its certificate) it serves HTTPS, at https://localhost:PORT/hook.
    """

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        if tls is not None:
            # The handshake runs in accept(): one that fails (the client refused the certificate) only
            # drops that connection, which socketserver ignores.
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.url = f"https://localhost:{self.port}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def answer(self, *replies: Reply) -> None:
        """Queue the answers of the next requests, in order."""
        with self._changed:
            self.script.extend(replies)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least `count` requests arrived (or fail at the deadline); returns them all."""
        return self.wait_until(lambda requests: len(requests) >= count, f"{count} request(s)", timeout)

    def wait_until(
        self, done: Callable[[list[Received]], bool], what: str, timeout: float = 5.0
    ) -> list[Received]:
        """Block until `done(requests)` holds (or fail at the deadline, saying `what` was awaited)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = len(self.requests)
                    raise AssertionError(f"expected {what} within {timeout}s; {got} request(s) arrived")
                self._changed.wait(left)
            return list(self.requests)

    def _record(self, request: Received) -> Reply:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()
            return self.script.pop(0) if self.script else self.default

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            reply = receiver._record(
                Received(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            if reply.delay and receiver._stop.wait(reply.delay):
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test output is the assertions, not access logs."""

    return Handler
