"""The Celery app of bench/triggers.py: the engine's own (broker/celery_app.py) with one probe task.

Started by bench/triggers.py as `celery -A bench.trigger_app worker`; BENCH_BROKER ("" = embedded)
and BENCH_DIR (DATA_DIR, and where the probe appends its pick-up delays) say where.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from actionhooks.broker.celery_app import make_celery
from actionhooks.settings import Settings

settings = Settings(BROKER_URL=os.environ.get("BENCH_BROKER", ""), DATA_DIR=os.environ.get("BENCH_DIR", "data"),
                    BROKER_QUEUE=os.environ.get("BENCH_QUEUE", "bench-triggers"))
app = make_celery(settings)
_out = Path(settings.DATA_DIR) / "probe.txt"


@app.task(name="bench.probe", acks_late=True, ignore_result=True)
def probe(sent_at: float) -> None:
    """Append the delay from the send to this task's start (one line per probe, O_APPEND: children share it)."""
    delay = time.time() - sent_at
    with open(_out, "a") as out:
        out.write(f"{delay:.6f}\n")
