"""HTTP/1.1 connections for the delivery pool, framed by the standard library's http.client.

httpx over httpcore over h11 spends ~1.5 ms of CPU per request on a loaded 2-core machine, five
times what http.client spends on the same request; with one event per request the client is the
limit of the whole engine (bench/http_clients.py measures them side by side). So the delivery
transport keeps httpcore's pool (keep-alive, limits, expiry) and its network backends (the SSRF
guard and the per-attempt deadline live there, delivery/ssrf.py and http.py), and only the framing of
requests and answers on a connection is http.client's instead of h11's: `Http11Pool` is an
httpcore.ConnectionPool whose connections are `Http11Connection`.

http.client reads and writes through a socket-like adapter over the httpcore network stream, so
every byte still goes through the deadline-bounded, guard-vetted stream, TLS is still started by
the backend with the origin's host for SNI and the certificate, and a connection never connects
by itself (the adapter is its only socket). A request goes out in one write (head and body
together), so Nagle's algorithm never holds the body back. Limits are http.client's: a status or
header line of at most 64 KB, at most 100 header lines.
"""

from __future__ import annotations

import http.client
import io
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpcore

__all__ = ["Http11Connection", "Http11Pool"]

READ_SIZE = 64 * 1024

_NEW, _ACTIVE, _IDLE, _CLOSED = "new", "active", "idle", "closed"
# http.client's own errors on a malformed, cut or oversized answer (BadStatusLine, RemoteDisconnected,
# IncompleteRead, LineTooLong, too many headers): to httpcore (and httpx above it) a protocol error.
_FRAMING_ERRORS = (http.client.HTTPException,)


class Http11Pool(httpcore.ConnectionPool):
    """httpcore's pool, its connections `Http11Connection`s (no proxies, no HTTP/2, no Unix sockets)."""

    def create_connection(self, origin: httpcore.Origin) -> httpcore.ConnectionInterface:
        return Http11Connection(
            origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry,
            network_backend=self._network_backend,
            socket_options=self._socket_options,
        )


class Http11Connection(httpcore.ConnectionInterface):
    """One keep-alive HTTP/1.1 connection to one origin, one request at a time; connected on first use."""

    def __init__(
        self,
        origin: httpcore.Origin,
        *,
        ssl_context: ssl.SSLContext | None,
        keepalive_expiry: float | None,
        network_backend: httpcore.NetworkBackend,
        socket_options: Any = None,
    ) -> None:
        self._origin = origin
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._backend = network_backend
        self._socket_options = socket_options
        self._stream: httpcore.NetworkStream | None = None
        self._socket: _Socket | None = None
        self._framing: _Framing | None = None
        self._state = _NEW
        self._expire_at: float | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        if not self.can_handle_request(request.url.origin):
            raise RuntimeError(f"request to {request.url.origin} on a connection to {self._origin}")
        with self._lock:
            if self._state not in (_NEW, _IDLE):
                raise httpcore.ConnectionNotAvailable()
            reused, self._state, self._expire_at = self._state == _IDLE, _ACTIVE, None
        if reused and self._dropped():
            self.close()  # the pool drops it and hands the request to another connection
            raise httpcore.ConnectionNotAvailable()
        timeouts = request.extensions.get("timeout", {})
        try:
            framing, socket = self._framing, self._socket
            if framing is None or socket is None:
                framing, socket = self._connect(request, timeouts.get("connect"))
            socket.timeouts = timeouts
            answer = self._exchange(framing, socket, request)
        except BaseException:
            self.close()
            raise
        return httpcore.Response(
            status=answer.status,
            headers=[(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.getheaders()],
            content=_Body(self, answer),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason.encode("latin-1"),
                        "network_stream": self._stream},
        )

    def _connect(self, request: httpcore.Request, timeout: float | None) -> tuple[_Framing, _Socket]:
        """Connect through the network backend (the guard, the deadline), TLS with the origin's host."""
        host = self._origin.host.decode("ascii")
        stream = self._backend.connect_tcp(host, self._origin.port, timeout=timeout,
                                           socket_options=self._socket_options)
        try:
            if self._origin.scheme == b"https":
                context = self._ssl_context or httpcore.default_ssl_context()
                context.set_alpn_protocols(["http/1.1"])
                server_hostname = request.extensions.get("sni_hostname") or host
                stream = stream.start_tls(context, server_hostname=server_hostname, timeout=timeout)
        except BaseException:
            stream.close()
            raise
        self._stream, self._socket, self._framing = stream, _Socket(stream), _Framing(host, self._origin.port)
        self._framing.sock = self._socket  # its only socket: it never connects by itself
        return self._framing, self._socket

    @staticmethod
    def _exchange(framing: _Framing, socket: _Socket, request: httpcore.Request) -> http.client.HTTPResponse:
        """Send the request (head and body in one write) and read the answer's head."""
        body = b"".join(request.stream)  # type: ignore[union-attr]  # a sync request's stream
        try:
            framing.putrequest(request.method.decode("ascii"), request.url.target.decode("ascii"),
                               skip_host=True, skip_accept_encoding=True)  # the request carries them
            for name, value in request.headers:
                framing.putheader(name, value)
            framing.endheaders(body or None)  # http.client writes the head, then the body
            socket.flush()
            return framing.getresponse()
        except _FRAMING_ERRORS as exc:
            raise httpcore.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
        except ValueError as exc:  # a header name or value http.client refuses to send
            raise httpcore.LocalProtocolError(str(exc)) from exc

    def answered(self, answer: http.client.HTTPResponse) -> None:
        """The answer was read to its end or dropped: the connection is idle again, or closed."""
        if answer.isclosed() and not answer.will_close:
            with self._lock:
                if self._state == _ACTIVE:
                    self._state = _IDLE
                    if self._keepalive_expiry is not None:
                        self._expire_at = time.monotonic() + self._keepalive_expiry
            return
        self.close()  # unread bytes left, or the server closes it: never reused

    def close(self) -> None:
        with self._lock:
            self._state = _CLOSED
            stream, self._stream, self._framing, self._socket = self._stream, None, None, None
        if stream is not None:
            stream.close()

    def can_handle_request(self, origin: httpcore.Origin) -> bool:
        return origin == self._origin

    def is_available(self) -> bool:
        return self._state == _IDLE

    def _dropped(self) -> bool:
        """Whether the server closed this idle connection (its socket is readable: EOF is waiting)."""
        stream = self._stream
        return stream is None or bool(stream.get_extra_info("is_readable"))

    def has_expired(self) -> bool:
        # The pool asks every connection on every request and answer; httpcore's own connections then
        # poll their socket each time (a system call per idle connection per request). Ours poll it
        # only when they are about to be reused (`handle_request`), as urllib3 does.
        return self._expire_at is not None and time.monotonic() > self._expire_at

    def is_idle(self) -> bool:
        return self._state == _IDLE

    def is_closed(self) -> bool:
        return self._state == _CLOSED

    def info(self) -> str:
        return f"HTTP/1.1, {self._state.upper()}"

    def __repr__(self) -> str:
        return f"<Http11Connection [{self._origin}, {self.info()}]>"


class _Framing(http.client.HTTPConnection):
    """http.client's request and answer framing on our adapter; it may never open a socket itself."""

    def connect(self) -> None:
        raise httpcore.ConnectError("the connection was closed")


class _Socket:
    """What http.client uses of a socket (sendall, makefile, close), over an httpcore network stream
    with the current request's timeouts."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._unsent: list[bytes] = []
        self.timeouts: dict[str, float | None] = {}

    def sendall(self, data: bytes) -> None:
        self._unsent.append(bytes(data))  # held until `flush`: one write per request

    def flush(self) -> None:
        data, self._unsent = b"".join(self._unsent), []
        self._stream.write(data, self.timeouts.get("write"))

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_Reader(self), READ_SIZE)

    def read(self, size: int) -> bytes:
        return self._stream.read(size, self.timeouts.get("read"))

    def close(self) -> None:
        """http.client closes its socket when an answer says `Connection: close` before the body is
        read; the stream is closed by the connection once the body is done (`answered`)."""


class _Reader(io.RawIOBase):
    def __init__(self, socket: _Socket) -> None:
        self._socket = socket

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._socket.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Body:
    """The answer's body as httpcore streams it; closing it hands the connection back."""

    def __init__(self, connection: Http11Connection, answer: http.client.HTTPResponse) -> None:
        self._connection = connection
        self._answer = answer

    def __iter__(self) -> Iterator[bytes]:
        try:
            # read(n), not read1: it also notices the end of a body of known length, so the
            # connection is handed back as soon as the last byte is read.
            while chunk := self._answer.read(READ_SIZE):
                yield chunk
        except _FRAMING_ERRORS as exc:
            self._connection.close()
            raise httpcore.RemoteProtocolError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            self._connection.close()
            raise

    def close(self) -> None:
        self._connection.answered(self._answer)
