"""OpenTelemetry traces across the database hops: a request's accept span -> route -> deliver.

The pipeline runs for real on one SQLite database: the API app in-process (TestClient), then the
worker's route and drain functions with the shipped StubTransport; spans go to the SDK's
InMemorySpanExporter. The route span can only find the accept span through the intake row, and the
deliver span the route span through the batch row: nothing else carries the context.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.exceptions import StarletteDeprecationWarning

from actionhooks import tracing
from actionhooks.api.app import create_app
from actionhooks.broker.celery_app import make_celery
from actionhooks.delivery.stub import StubTransport
from actionhooks.settings import Settings
from actionhooks.storage.tokens import create_token
from actionhooks.worker.deliver import drain_hook
from actionhooks.worker.route import route_account
from actionhooks.worker.runtime import Runtime
from tests.support.engine import event, http_hook, poll, running_engine
from tests.support.faults import CountingReceiver

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)
        provider.shutdown()


def _one(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_a_trace_links_each_request_to_the_delivery_of_its_events(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    settings = Settings(DATABASE_URL=f"sqlite:///{tmp_path / 't.db'}", DATA_DIR=str(tmp_path), BROKER_URL="memory://",
                        HOOK_ALLOW_PRIVATE_TARGETS=True)
    app = create_app(settings)
    stub = StubTransport()
    rt = Runtime(settings, make_celery(settings), transport_factory=lambda _config, _settings: stub)
    try:
        with TestClient(app) as client:
            auth = {"Authorization": f"Bearer {create_token(app.state.sessions, 23, 'admin')}"}
            hook = client.post("/api/v1/hooks", headers=auth, json={
                "name": "traced", "actions": ["click"],
                "delivery": {"type": "http", "url": "http://127.0.0.1:9/", "batch_timeout_sec": 0},
            })
            assert hook.status_code == 201, hook.text
            # Given two requests, the first continuing a producer's trace (W3C traceparent header)
            producer = {"traceparent": f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"}
            first = client.post("/api/v1/events", headers={**auth, **producer}, json=[event(i) for i in range(3)])
            second = client.post("/api/v1/events", headers=auth, json=[event(i) for i in range(3, 5)])
            assert (first.status_code, second.status_code) == (202, 202)
        # When a worker routes and delivers them (the contexts cross the database in the intake and batch rows)
        assert route_account(rt, 23) == 5
        assert drain_hook(rt, hook.json()["id"]) == 1
    finally:
        rt.close()
    finished = spans.get_finished_spans()
    accepts, routes, delivers = (_one(finished, f"actionhooks.{n}") for n in ("accept", "route", "deliver"))
    assert (len(accepts), len(routes), len(delivers)) == (2, 1, 1)
    # Then the first accept span continues the producer's trace
    assert accepts[0].context.trace_id == int(PRODUCER_TRACE, 16)
    assert accepts[0].parent is not None
    assert accepts[0].parent.span_id == int(PRODUCER_SPAN, 16)
    # And the route span links to both requests' accept spans, the deliver span to the route span
    assert {link.context.span_id for link in routes[0].links} == {a.context.span_id for a in accepts}
    assert [link.context.span_id for link in delivers[0].links] == [routes[0].context.span_id]
    # And the deliver span describes the attempt that delivered all five events
    attributes = delivers[0].attributes or {}
    assert attributes["actionhooks.events"] == 5
    assert attributes["actionhooks.transport"] == "http"
    assert delivers[0].status.is_ok
    assert sum(len(b.events) for b in stub.batches) == 5


ENGINE_WITHOUT_OTEL = textwrap.dedent("""
    import importlib.abc, sys

    blocked, roles = sys.argv[1], sys.argv[2]

    class Missing(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if blocked and (name == blocked or name.startswith(tuple(p + "." for p in blocked.split(",")))
                            or name in blocked.split(",")):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Missing())
    import actionhooks.cli, actionhooks.worker.tasks
    from actionhooks import tracing
    from actionhooks.settings import Settings
    from actionhooks.broker.celery_app import make_celery
    from actionhooks.worker.runtime import runtime_for
    settings = Settings(DATABASE_URL="sqlite:///" + sys.argv[3], DATA_DIR=sys.argv[4], BROKER_URL="memory://")
    celery = make_celery(settings)
    runtime_for(celery)  # a worker process's start (it calls tracing.configure)
    if roles == "api+worker":
        from actionhooks.api.app import create_app
        create_app(settings)
    on = tracing.configure()
    with tracing.span("actionhooks.accept", links=["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]) as s:
        assert s.traceparent is None and tracing.current() is None
    print(on, " ".join(sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")))
""")
ASKS_FOR_TRACES = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(("blocked", "roles", "env", "allowed"), [
    # a worker without opentelemetry installed at all, although the variables ask for traces
    ("opentelemetry", "worker", ASKS_FOR_TRACES, ""),
    # the API too (FastAPI itself depends on and imports opentelemetry-api): without the extra
    # (opentelemetry-sdk, the exporters) the engine loads nothing of them
    ("opentelemetry.sdk,opentelemetry.exporter", "api+worker", ASKS_FOR_TRACES, "opentelemetry.context"),
    # the extra installed but no exporter asked for: a worker loads nothing of opentelemetry
    ("", "worker", {}, ""),
])
def test_without_the_extra_or_the_variables_the_engine_imports_nothing_from_opentelemetry(
    tmp_path: Path, blocked: str, roles: str, env: dict[str, str], allowed: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", ENGINE_WITHOUT_OTEL, blocked, roles, str(tmp_path / "e.db"), str(tmp_path)],
        check=False, capture_output=True, text=True, env={**clean, **env}, timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    on, *loaded = out.stdout.split()
    assert on == "False"
    if allowed:  # FastAPI's own import of the API package; nothing of the SDK or an exporter
        assert allowed in loaded
        assert not [m for m in loaded if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]
    else:
        assert loaded == []
    if env:
        assert "'otel' extra is not installed" in out.stderr


def _console_spans(*logs: Path) -> list[dict[str, Any]]:
    """Spans printed by the SDK's ConsoleSpanExporter (indented JSON objects) among a process's log lines
    (a worker's stdout goes through Celery's logger: its objects start after a log prefix)."""
    found = []
    for log in logs:
        for block in re.findall(r'\{\n    "name".*?^\}$', log.read_text(), flags=re.MULTILINE | re.DOTALL):
            with suppress(ValueError):
                found.append(json.loads(block))
    return found


def test_spans_of_the_api_and_worker_processes_link_up_through_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an engine whose processes export spans through the standard variables (here: to their logs)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
    receiver = CountingReceiver()
    try:
        with running_engine(tmp_path, "api", "worker", "scheduler") as engine, engine.client() as api:
            hook = api.post("/hooks", json=http_hook(receiver.url, batch_timeout_sec=0.2)).json()
            # When a producer's request is accepted and delivered
            producer = {"traceparent": f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"}
            assert api.post("/events", headers=producer, json=[event(i) for i in range(4)]).status_code == 202
            poll(lambda: len(receiver.delivered_ids()) == 4, "the receiver to get the events", timeout=60)

            def linked() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
                spans = _console_spans(engine.logs["api"], engine.logs["worker"])
                accepts = [s for s in spans if s["name"] == "actionhooks.accept"
                           and s["context"]["trace_id"] == f"0x{PRODUCER_TRACE}"]
                for accept in accepts:
                    for route in (s for s in spans if s["name"] == "actionhooks.route"):
                        if accept["context"]["span_id"] not in [ln["context"]["span_id"] for ln in route["links"]]:
                            continue
                        for deliver in (s for s in spans if s["name"] == "actionhooks.deliver"):
                            if route["context"]["span_id"] in [ln["context"]["span_id"] for ln in deliver["links"]]:
                                return accept, route, deliver
                return None

            # Then the API's accept span (a child of the producer's), the worker's route span and its
            # deliver span are one chain of links, across two processes and the database between them
            accept, _route, deliver = poll(linked, "linked accept, route and deliver spans", timeout=30, every=0.5)
            assert accept["parent_id"] == f"0x{PRODUCER_SPAN}"
            assert deliver["attributes"]["actionhooks.hook_id"] == hook["id"]
            assert deliver["attributes"]["actionhooks.events"] == 4
    finally:
        receiver.close()
