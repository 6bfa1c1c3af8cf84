"""The router's in-process work per event, step by step, for issue 22's hook (a campaign filter and the
two template values `{{profile_id}}` and `{{uuid}}`), on a chunk of 5,000 events as one route task
claims them: decode the intake blob, match, gather the catalog ids the values need, render custom_data,
encode the batches of 100. No database: the statements of a chunk are measured end to end by
bench/e2e_http.py. Prints the CPU-µs per event of each step (median of --runs, after one warm-up).
The reference is the decoding step of the same run (orjson.loads, the least any router does per event).

Run: `.venv/bin/python bench/routing_cpu.py` (in process, no services needed). To compare two
checkouts, run it from each in turn: steps are timed with process CPU time, so a loaded machine
slows both alike.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import common
import orjson
from matching import hook_row

from actionhooks.hooks.matching import HookIndex, compile_hook
from actionhooks.hooks.rendering import render_events
from actionhooks.settings import Settings
from actionhooks.storage import lookups
from actionhooks.storage.deliveries import new_batch
from actionhooks.templating import DictCatalog
from tests.support.engine import event

VALUES = {"bench_seq": "{{profile_id}}", "event_uuid": "{{uuid}}"}
CHUNK = 5000
BATCH = 100


def cpu_us(step: Callable[[], object], events: int, runs: int) -> float:
    """Median CPU-µs per event of `step` over `runs` runs (after one warm-up)."""
    step()
    times = []
    for _ in range(runs):
        gc.collect()
        started = time.process_time()
        step()
        times.append(time.process_time() - started)
    return common.median(times) / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(common.machine(), file=sys.stderr)
    hook = compile_hook(hook_row(1, 973, VALUES), Settings())
    index = HookIndex([hook])
    blob = orjson.dumps([event(i, profile_id=str(i // BATCH)) for i in range(CHUNK)])
    events = orjson.loads(blob)
    matched: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        for h in index.candidates(e):
            matched[h.id].append(e)
    assert len(matched[hook.id]) == CHUNK, "every event must match the hook"
    no_catalog = DictCatalog()
    rendered, broken = render_events(hook, matched[hook.id], {}, no_catalog, None)  # type: ignore[arg-type]
    assert broken is None
    assert len(rendered) == CHUNK

    def match() -> None:
        found: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            for h in index.candidates(e):
                found[h.id].append(e)

    def catalog_ids() -> None:  # what load_catalog gathers before its one query (the query left out)
        real = lookups.catalog_for
        lookups.catalog_for = lambda _session, _account, _wanted: {}  # type: ignore[assignment]
        try:
            lookups.load_catalog(None, 23, [hook], matched)  # type: ignore[arg-type]
        finally:
            lookups.catalog_for = real  # type: ignore[assignment]

    def encode() -> None:
        for start in range(0, CHUNK, BATCH):
            new_batch(hook.id, hook.account_id, rendered[start : start + BATCH], 0.0)

    steps: list[tuple[str, Callable[[], object]]] = [
        ("decode the intake blob (orjson.loads) - reference", lambda: orjson.loads(blob)),
        ("match (HookIndex.candidates)", match),
        ("catalog ids for the values (load_catalog without its query)", catalog_ids),
        ("render custom_data (render_events)",
         lambda: render_events(hook, matched[hook.id], {}, no_catalog, None)),  # type: ignore[arg-type]
        ("encode batches of 100 (new_batch)", encode),
    ]
    rows = []
    reference = 0.0
    total = 0.0
    for label, step in steps:
        us = cpu_us(step, CHUNK, args.runs)
        reference = reference or us
        total += us
        rows.append([label, us, f"{us / reference:.1f}x"])
    rows.append(["total", total, f"{total / reference:.1f}x"])
    print(common.table(f"Routing work per event in process ({CHUNK:,}-event chunk, one hook with a campaign filter "
                       f"and values {{{{profile_id}}}}, {{{{uuid}}}}; median of {args.runs})",
                       ["step", "CPU-µs per event", "of decoding"], rows))


if __name__ == "__main__":
    main()
