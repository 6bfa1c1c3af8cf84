"""OpenTelemetry traces of accept -> route -> deliver, when the optional `otel` extra is installed.

An event crosses two database hops between the request that brought it and its delivery, in
different processes and often machines, with batching in between: one routing round serves many
requests, one batch carries events of many requests. So the spans are joined by links, not by
parenthood: the accept span's W3C traceparent is stored with the intake row; the route span links
to the accept spans of every intake row it routes (the SDK keeps the first OTEL_SPAN_LINK_COUNT_LIMIT,
128 by default) and its own traceparent is stored with the batches it forms; the deliver span of
each attempt links to that route span. A trace backend follows the links from a request to the
attempts that delivered its events. An accept span is the child of the request's own `traceparent`
header when it has one, so a producer's trace continues into the engine.

Tracing is on when opentelemetry-sdk is importable and the standard variables ask for an exporter
(OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp|console),
unless OTEL_SDK_DISABLED=true; service name, resource attributes, headers and sampling come from the
usual OTEL_* variables, read by the SDK itself. When off, nothing from opentelemetry is imported and
every span below is a shared no-op: the hot path pays one `is None` test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Span", "configure", "current", "enabled", "flush", "span", "use"]

log = logging.getLogger(__name__)

_tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: Any = None  # its TracerProvider


class Span:
    """What a caller may do with a span: read its traceparent (to store it), mark it failed."""

    def __init__(self, otel_span: Any = None, traceparent: str | None = None) -> None:
        self._span = otel_span
        self.traceparent = traceparent

    def fail(self, description: str) -> None:
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, description))


_NOOP = Span()


def enabled() -> bool:
    return _tracer is not None


def _wanted() -> bool:
    env = os.environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(exporter or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure() -> bool:
    """Start exporting traces if the OTEL_* variables ask for it and the extra is installed; True if on.

    Called once per process (the API at start-up, each worker process at its first task: a prefork
    child must start its own export thread after the fork).
    """
    if _tracer is not None or not _wanted():
        return _tracer is not None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = _exporter()
    except ImportError as exc:
        log.warning("OTEL_* variables ask for traces but the 'otel' extra is not installed (%s): "
                    "pip install 'actionhooks[otel]'", exc)
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME")
                                                        or "actionhooks"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use(provider)
    return True


def _exporter() -> Any:
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol.strip() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
    return OTLPSpanExporter()  # endpoint, headers, timeout: the OTEL_EXPORTER_OTLP_* variables


def use(provider: Any) -> None:
    """Trace with `provider` (an SDK TracerProvider; tests pass one with an in-memory exporter), or stop with None."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("actionhooks")


def flush() -> None:
    """Export the spans still buffered: a prefork child may leave without running atexit handlers."""
    if _provider is not None:
        _provider.force_flush()


@contextmanager
def span(
    name: str, *, parent: str | None = None, links: Iterable[str | None] = (), **attributes: Any
) -> Iterator[Span]:
    """A span named `name`, current while the block runs; `parent` and `links` are stored traceparents."""
    tracer = _tracer
    if tracer is None:
        yield _NOOP
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link

    contexts = []
    for traceparent in dict.fromkeys(t for t in links if t):  # distinct, in order
        linked = trace.get_current_span(_extract(traceparent)).get_span_context()
        if linked.is_valid:
            contexts.append(Link(linked))
    context = _extract(parent) if parent else None
    attrs = {f"actionhooks.{k}": v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, context=context, links=contexts, attributes=attrs) as otel_span:
        yield Span(otel_span, _inject(otel_span))


def current() -> str | None:
    """The traceparent of the current span (to store with the rows it writes), None when tracing is off."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    return _inject(trace.get_current_span())


def _extract(traceparent: str) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent[:64]})


def _inject(otel_span: Any) -> str | None:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(otel_span))
    return carrier.get("traceparent")
