"""HTTP/1.1 for deliveries: a keep-alive pool of plain sockets, answers parsed by httptools (llhttp, C).

With one event per request the HTTP client is the limit of the whole engine. httpx over httpcore
spent ~900 CPU-µs per request here, and httpcore's pool with http.client's framing below it ~550:
every layer (httpx's Request/Response models, httpcore's pool bookkeeping, http.client's line reads
and its e-mail header parser, the network-stream adapters) is Python code run per request, and with
16 sending threads each one is also a turn at the GIL. This pool does per request only what a
request needs: one head built by one join, head and body in one `sendall`, `recv_into` a buffer
that llhttp parses in C (one per sending thread, so idle connections hold none), and one poll of an
idle socket before reusing it
(`bench/http_clients.py` measures it beside httpx and bare http.client in the same run).

Everything a delivery depends on stays:
- one deadline per attempt: every connect, TLS handshake, write and read gets the time left until
  `deadline` (a receiver that trickles its answer a byte at a time is cut there: `AnswerTimeout`);
- connections come from `connect` (the SSRF guard, delivery/ssrf.py): the name is resolved and
  every address vetted before one is connected to, and TLS runs against the host name (SNI and the
  certificate check);
- limits on what a receiver can make us hold: an answer head of at most MAX_HEAD_BYTES and
  MAX_HEADERS header lines, and at most `read_limit` bytes of body (after gzip/deflate decoding,
  which is bounded too); past that the connection is closed, never read to its end;
- keep-alive as the answer allows (HTTP/1.0, `Connection: close`), idle connections expire after
  `keepalive_expiry` seconds (closed by `prune`, which the worker calls every few seconds, or else
  by the pool's next request), and at most `max_connections` are open at once per pool.

What the pool raises is `HttpFailure` (or its subclasses); the transport maps it to our errors.
"""

from __future__ import annotations

import base64
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httptools
import httpx

from actionhooks import __version__
from actionhooks.errors import TargetUnreachable

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "USER_AGENT",
    "Answer",
    "AnswerTimeout",
    "HttpFailure",
    "Pool",
    "Target",
    "UndecodableBody",
    "basic_authorization",
    "endpoint",
]

USER_AGENT = f"actionhooks/{__version__}"

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
RECV_SIZE = 64 * 1024  # the receive buffer of each thread that sends (see _recv_buffer)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

# Opens a TCP connection to (host, port) within `timeout` seconds: the SSRF guard's `connect`.
Connect = Callable[[str, int, float], socket.socket]


class HttpFailure(Exception):
    """No usable answer: the connect, TLS, or the exchange failed, or the answer was malformed or cut."""


class AnswerTimeout(HttpFailure):
    """The attempt's deadline passed before the answer was read."""


class UndecodableBody(HttpFailure):
    """The answer's body does not decode as its Content-Encoding says; the status is known."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: the origin a connection is kept for, and the request's own path and query."""

    tls: bool
    host: str  # ASCII (IDNA) host, as resolved and as SNI
    port: int
    host_header: str  # host[:port], the port only when it is not the scheme's default
    path: str  # the request target: path and query, percent-encoded

    @classmethod
    def of(cls, url: httpx.URL) -> Target:
        """From a parsed URL (httpx parses and normalises it: IDNA, percent-encoding, default ports)."""
        tls = url.scheme == "https"
        host = url.raw_host.decode("ascii")
        return cls(tls, host, url.port or (443 if tls else 80), url.netloc.decode("ascii"),
                   url.raw_path.decode("ascii"))

    @property
    def origin(self) -> tuple[bool, str, int]:
        return self.tls, self.host, self.port


@dataclass(slots=True)
class Answer:
    """A receiver's answer: status, reason, headers (lower-case names, repeats joined by ", ") and the
    first `read_limit` bytes of its body, decoded as its Content-Encoding says."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_redirect(self) -> bool:
        return self.status in _REDIRECTS and "location" in self.headers

    def text(self) -> str:
        """The body as text, in the charset its Content-Type names (UTF-8 when it names none or an
        unknown one); undecodable bytes are replaced."""
        charset = _charset(self.headers.get("content-type", ""))
        try:
            return self.body.decode(charset or "utf-8", errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")


class Pool:
    """Keep-alive connections to the origins one transport sends to; thread-safe.

    A connection is used by one thread at a time: taken from the idle stack (the most recently used
    first, so surplus connections age out), or opened; handed back after a complete answer that
    allows keep-alive, else closed. No lock is held across network I/O.
    """

    def __init__(
        self,
        connect: Connect,
        *,
        max_connections: int,
        keepalive_expiry: float,
        read_limit: int,
        ssl_context: Callable[[], ssl.SSLContext] = httpx.create_ssl_context,
    ) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(max_connections)
        self._expiry = keepalive_expiry
        self._read_limit = read_limit
        self._make_ssl_context = ssl_context
        self._ssl_context: ssl.SSLContext | None = None  # made on the first TLS connect
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def request(
        self,
        method: str,
        target: Target,
        headers: Mapping[str, str],
        body: bytes | None,
        deadline: float,
    ) -> Answer:
        """One request, ended by `deadline` (time.monotonic()) whatever the receiver does."""
        if self._closed:
            raise HttpFailure("the transport is closed")
        lines = [f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1")
        if body:
            data += body  # one write: Nagle's algorithm never holds the body back
        if not self._slots.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise AnswerTimeout("timed out waiting for a free connection")
        try:
            conn = self._take(target.origin) or self._open(target, deadline)
            try:
                answer, reusable = conn.exchange(data, deadline, self._read_limit)
            except BaseException:
                conn.close()
                raise
            self._give_back(conn, reusable)
            return answer
        finally:
            self._slots.release()

    def prune(self) -> None:
        """Close the idle connections past their expiry or closed by the server, now rather than on the
        pool's next request: a hook that stops getting events keeps no socket open (in CLOSE_WAIT once
        the receiver closed its end). One poll per idle connection, none blocking."""
        now = time.monotonic()
        keep: list[_Connection] = []
        stale: list[_Connection] = []
        with self._lock:
            for conn in self._idle:
                (stale if conn.expires_at <= now or conn.dropped() else keep).append(conn)
            self._idle = keep
        for conn in stale:
            conn.close()

    def close(self) -> None:
        """Close the idle connections; one in use is closed when its request ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self, origin: tuple[bool, str, int]) -> _Connection | None:
        """An idle connection to `origin` the server has not closed meanwhile; expired ones are closed."""
        now = time.monotonic()
        while True:
            with self._lock:
                found = next((i for i in range(len(self._idle) - 1, -1, -1) if self._idle[i].origin == origin), None)
                if found is None:
                    return None
                conn = self._idle.pop(found)
            if conn.expires_at > now and not conn.dropped():
                return conn
            conn.close()

    def _open(self, target: Target, deadline: float) -> _Connection:
        try:
            sock = self._connect(target.host, target.port, _left(deadline))
        except TimeoutError as exc:
            raise AnswerTimeout(f"connect to {target.host}:{target.port} timed out") from exc
        except (OSError, TargetUnreachable) as exc:  # refused, no route; a name that does not resolve
            why = exc.message if isinstance(exc, TargetUnreachable) else exc.strerror or exc
            raise HttpFailure(f"connect to {target.host}:{target.port}: {why}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.tls:
                sock.settimeout(_left(deadline))
                sock = self._tls_context().wrap_socket(sock, server_hostname=target.host)
        except TimeoutError as exc:
            sock.close()
            raise AnswerTimeout(f"TLS handshake with {target.host}:{target.port} timed out") from exc
        except (OSError, ValueError) as exc:  # ssl.SSLError (a bad certificate...) is an OSError
            sock.close()
            raise HttpFailure(f"TLS with {target.host}:{target.port}: {exc}") from exc
        return _Connection(target.origin, sock)

    def _tls_context(self) -> ssl.SSLContext:
        context = self._ssl_context
        if context is None:
            context = self._make_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context  # two threads may both make one: either is fine
        return context

    def _give_back(self, conn: _Connection, reusable: bool) -> None:
        if reusable:
            conn.expires_at = time.monotonic() + self._expiry
            with self._lock:
                if not self._closed:
                    self._idle.append(conn)
                    return
        conn.close()


def _left(deadline: float) -> float:
    """Seconds until `deadline`; AnswerTimeout once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise AnswerTimeout("timed out: the attempt's deadline passed")
    return left


class _Connection:
    """One socket to one origin, used by one thread at a time."""

    __slots__ = ("expires_at", "origin", "sock")

    def __init__(self, origin: tuple[bool, str, int], sock: socket.socket) -> None:
        self.origin = origin
        self.sock = sock
        self.expires_at = 0.0

    def dropped(self) -> bool:
        """Whether the server closed this idle connection (or sent something unasked): its socket is
        readable. One poll, when the connection is about to be reused or is pruned."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def exchange(self, data: bytes, deadline: float, read_limit: int) -> tuple[Answer, bool]:
        """Send `data` and read the answer; (the answer, whether the connection may be reused)."""
        sock = self.sock
        try:
            sock.settimeout(_left(deadline))
            sock.sendall(data)  # the timeout bounds the whole sendall, not each send
            reader = _AnswerReader(read_limit)
            parser = httptools.HttpResponseParser(reader)
            reader.parser = parser
            buffer = _recv_buffer()
            view = memoryview(buffer)
            head_room = MAX_HEAD_BYTES
            while not reader.done:
                sock.settimeout(_left(deadline))
                n = sock.recv_into(buffer)
                if n == 0:
                    return reader.at_eof(), False
                chunk = view[:n]
                if not reader.head_done:  # feed at most what the head may still take
                    piece = chunk[:head_room]
                    parser.feed_data(piece)
                    head_room -= len(piece)
                    if not reader.head_done:
                        if head_room <= 0:
                            raise HttpFailure(f"the answer's head is over {MAX_HEAD_BYTES} bytes")
                        continue
                    chunk = chunk[len(piece):]
                    if not chunk:
                        continue
                parser.feed_data(chunk)
        except TimeoutError as exc:
            raise AnswerTimeout("timed out before the answer was complete") from exc
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _Unasked):
                return reader.answer(), False
            if isinstance(exc.__context__, HttpFailure):  # raised by one of our callbacks
                raise exc.__context__ from None
            raise HttpFailure(f"malformed answer: {exc}") from exc
        except OSError as exc:
            raise HttpFailure(f"connection lost: {exc.strerror or exc}") from exc
        return reader.answer(), reader.keep_alive and not reader.truncated

    def close(self) -> None:
        self.sock.close()


_buffers = threading.local()


def _recv_buffer() -> bytearray:
    """This thread's receive buffer, made on its first exchange. A thread reads one answer at a time,
    so one buffer per sending thread (the worker's end with their drain) serves every connection,
    and an idle connection holds none: 64 KB per open connection was most of a worker's memory for
    its pools, at 16 connections per hook."""
    try:
        buffer: bytearray = _buffers.buffer
    except AttributeError:
        buffer = _buffers.buffer = bytearray(RECV_SIZE)
    return buffer


class _Unasked(Exception):
    """The receiver sent more after its answer."""


@dataclass(slots=True)
class _AnswerReader:
    """httptools' callbacks for one answer: collects the status, headers and (capped) body."""

    read_limit: int
    parser: httptools.HttpResponseParser | None = None
    status: int = 0
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    n_headers: int = 0
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    decoder: _Decoder | None = None
    head_done: bool = False
    done: bool = False
    truncated: bool = False
    keep_alive: bool = False  # as the answer says (asked at its end: llhttp resets after it)

    def on_message_begin(self) -> None:
        if self.done:  # bytes after the answer, which nobody asked for: stop; the connection is not reused
            raise _Unasked()

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.n_headers += 1
        if self.n_headers > MAX_HEADERS:
            raise HttpFailure(f"the answer has over {MAX_HEADERS} header lines")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        if self.status >= 200:
            self.head_done = True
            self.decoder = _Decoder.of(self.headers.get("content-encoding", ""), self.status)

    def on_body(self, body: bytes) -> None:
        if self.truncated:
            return
        data = self.decoder.feed(body, self.read_limit - self.size) if self.decoder else body
        self.chunks.append(data)
        self.size += len(data)
        if self.size >= self.read_limit:
            self.truncated = self.done = True  # enough: the rest is never read

    def on_message_complete(self) -> None:
        if not self.head_done:  # an interim 1xx answer: the real one follows
            self.reason, self.headers, self.n_headers = "", {}, 0
            return
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()
        self.done = True

    def at_eof(self) -> Answer:
        """The server closed the connection: the answer so far if its body runs to the close."""
        delimited = "content-length" in self.headers or "chunked" in self.headers.get("transfer-encoding", "")
        if not self.head_done or (delimited and not self.done):
            raise HttpFailure("the server closed the connection before the answer was complete")
        return self.answer()

    def answer(self) -> Answer:
        body = b"".join(self.chunks)[: self.read_limit]
        return Answer(self.status, self.reason.strip(), self.headers, body)


class _Decoder:
    """gzip or deflate, as httpx decodes them (a deflate body may be zlib-wrapped or raw); bounded:
    never more than what is still wanted is inflated, so a compression bomb costs nothing."""

    def __init__(self, wbits: int, status: int, name: str) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._raw_fallback = wbits == zlib.MAX_WBITS  # deflate: try raw if it is not zlib-wrapped
        self._started = False
        self._status = status
        self._name = name

    @classmethod
    def of(cls, encoding: str, status: int) -> _Decoder | None:
        name = encoding.strip().lower()
        if name in ("gzip", "x-gzip"):
            return cls(zlib.MAX_WBITS | 16, status, name)
        if name == "deflate":
            return cls(zlib.MAX_WBITS, status, name)
        return None  # identity, or one we do not decode (as httpx): matched as it is

    def feed(self, data: bytes, room: int) -> bytes:
        try:
            out = self._inflate.decompress(data, max(room, 1))
        except zlib.error as exc:
            if self._raw_fallback and not self._started:
                self._inflate, self._raw_fallback = zlib.decompressobj(-zlib.MAX_WBITS), False
                return self.feed(data, room)
            raise UndecodableBody(f"answer body is not valid {self._name}: {exc}", self._status) from exc
        self._started = True
        return out


def endpoint(url: httpx.URL) -> str:
    """`url` as an error message names it (errors end up in the attempts log): scheme, host, port and
    path, without its query or credentials."""
    return f"{url.scheme}://{url.netloc.decode()}{url.path}"


def basic_authorization(username: str, password: str) -> str:
    """The Authorization value of HTTP Basic auth (UTF-8 credentials, as httpx sends them)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _charset(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"') or None
    return None
