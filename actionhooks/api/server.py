"""Serving the API: uvicorn with a deadline on reading each request and a bound on connections.

uvicorn closes a keep-alive connection that stays idle after a response (`timeout_keep_alive`), but
nothing closes one whose client sent part of a request and stopped: its keep-alive timer is
cancelled by the first byte and only re-armed after a response, and `h11_max_incomplete_event_size`
bounds the header's size, not its time (uvicorn 0.54 source: `data_received` starts with
`_unset_keepalive_if_required()`, and `connection_made` arms nothing; uvicorn issue/PR #1192 on
silent connections). A few thousand such clients would hold the server's sockets
for ever (slowloris). So each connection gets a deadline, API_REQUEST_TIMEOUT_SEC from the moment it
can send a request (accepted, or its last response sent), to have sent that request completely,
headers and body, as reverse proxies do (nginx `client_header_timeout`/`client_body_timeout`);
a request that is in is never cut while the app answers it. Connections beyond API_MAX_CONNECTIONS
get a 503 and are closed at once, before anything of theirs is read (uvicorn's own
`limit_concurrency` answers 503 only once a request's headers have arrived, so it bounds no socket).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from actionhooks.settings import Settings

__all__ = ["bounded_protocol", "serve", "uvicorn_config"]

_OVER_CAPACITY_BODY = b"too many connections, retry later"
_OVER_CAPACITY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_OVER_CAPACITY_BODY), _OVER_CAPACITY_BODY)
)


class _BoundedRequests:
    """Mixed into uvicorn's HTTP protocols (httptools or h11): the request deadline and the connection bound.

    Relies only on what both share: `connections`, `loop`, `transport`, `cycle` (with `more_body` and
    `response_complete`) and the `on_response_complete` callback.
    """

    request_timeout: float
    max_connections: int
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(_CoalescedWrites(transport, self.loop))  # type: ignore[misc,attr-defined]
        if len(self.connections) > self.max_connections:  # type: ignore[attr-defined]
            transport.write(_OVER_CAPACITY)
            transport.close()
            return
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)  # type: ignore[attr-defined]

    def _expired(self) -> None:
        self._deadline = None
        cycle: Any = self.cycle  # type: ignore[attr-defined]
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return  # the request is in and the app is answering; its completion re-arms the deadline
        transport: asyncio.Transport = self.transport  # type: ignore[attr-defined]
        if not transport.is_closing():
            transport.close()


class _CoalescedWrites:
    """A connection's transport whose writes of one event-loop turn go out in one system call.

    uvicorn writes an answer's head at `http.response.start` and its body at `http.response.body`,
    two sends: for a pixel hit they were the API's largest cost (bench/capture.py under py-spy: half
    of the time its capture path held the GIL was uvicorn's two `transport.write`). Writes are kept
    until the loop's next turn (or a close) and sent together; their order never changes.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            self._pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


def _base_protocol() -> type[asyncio.Protocol]:
    """What uvicorn's `http="auto"` picks: httptools when installed, else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        return H11Protocol
    return HttpToolsProtocol


def bounded_protocol(
    request_timeout: float, max_connections: int, base: type[asyncio.Protocol] | None = None
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the request deadline and the connection bound."""
    parent = base or _base_protocol()
    attrs = {"request_timeout": request_timeout, "max_connections": max_connections}
    return type(f"Bounded{parent.__name__}", (_BoundedRequests, parent), attrs)


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "host": settings.API_HOST,
        "port": settings.API_PORT,
        "log_level": settings.LOG_LEVEL.lower(),
        "access_log": False,
        "http": bounded_protocol(settings.API_REQUEST_TIMEOUT_SEC, settings.API_MAX_CONNECTIONS),
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(app: FastAPI, settings: Settings) -> None:
    """Run the API until SIGINT/SIGTERM (the `actionhooks api` role)."""
    uvicorn.Server(uvicorn_config(app, settings)).run()
