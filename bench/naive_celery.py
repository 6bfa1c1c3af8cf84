"""Reference 2 of the end-to-end benchmark: what a user would write instead of the engine.

One Celery task per event that POSTs it with httpx (Redis broker). The worker is started by
bench/e2e_http.py as `celery -A bench.naive_celery worker`; BENCH_BROKER and BENCH_URL say where.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from celery import Celery

app = Celery("naive", broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/15"))
app.conf.update(task_ignore_result=True, worker_hijack_root_logger=False, worker_send_task_events=False)
_client = httpx.Client(timeout=10)


@app.task(name="naive.post_event")
def post_event(event: dict[str, Any]) -> None:
    _client.post(os.environ["BENCH_URL"], json=[event]).raise_for_status()
