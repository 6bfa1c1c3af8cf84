"""Matching and rendering cost per event with 1, 100, 1,000 and 10,000 active hooks in the account.

Exactly one hook matches (the others watch the same event type in other campaigns, the case an
index must not scan); the router's own code is timed: the hook index lookup (`HookIndex.candidates`)
and `hooks.rendering.render_events` (custom_data built per event), without and with a custom_data of 5 template
parameters. The reference is the 1-hook figure of the same run; the target is 10,000 hooks <= 2x.
A third series gives every hook payload filters instead of a campaign filter (`filters.match`: an
`eq` on event_data.params.plan, different per hook, and a `gte` on event_data.params.seats): the
index files them by their `eq` value, so the one matching hook is found without scanning the others.
Also prints how long compiling the hooks takes (once per worker process, at start or on change).

Run: `.venv/bin/python bench/matching.py` (in-process, no services needed).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import common

from actionhooks.hooks.matching import HookIndex, compile_hook
from actionhooks.hooks.rendering import render_events
from actionhooks.settings import Settings
from actionhooks.templating import CatalogEntry, DictCatalog
from tests.support.engine import event

FIVE_PARAMETERS = {"type": "{{event_type}}", "campaign": "{{campaign_name}}", "date": "{{event_date_rfc3339}}",
                   "profile": "{{profile_id}}", "id": "{{uuid}}"}
MATCHING_CAMPAIGN = 973


def hook_row(hook_id: int, campaign: int, values: dict[str, str], payload: bool = False) -> dict[str, Any]:
    filters: dict[str, Any] = {"campaigns": [campaign]}
    if payload:  # the same selectivity expressed as payload conditions
        filters = {"match": [{"path": "event_data.params.plan", "op": "eq", "value": f"plan-{campaign}"},
                             {"path": "event_data.params.seats", "op": "gte", "value": 1}]}
    return {"id": hook_id, "account_id": 23, "version": 1, "active": True, "name": f"h{hook_id}",
            "database_id": None, "actions": ["click"], "filters": filters,
            "custom_data": {"profile_fields": [], "values": values}, "include_content": False,
            "delivery": {"type": "http", "url": "http://127.0.0.1:9/hook"}}


def per_event_us(
    n_hooks: int, values: dict[str, str], events: list[dict[str, Any]], payload: bool = False
) -> tuple[float, float]:
    """(µs per event to match and render, seconds to compile the hooks)."""
    settings = Settings()
    started = time.perf_counter()
    hooks = [compile_hook(hook_row(i, MATCHING_CAMPAIGN if i == 0 else 100_000 + i, values, payload), settings)
             for i in range(n_hooks)]
    index = HookIndex(hooks)
    compile_sec = time.perf_counter() - started
    catalog = DictCatalog({("campaigns", MATCHING_CAMPAIGN): CatalogEntry("Spring sale", subid="spring")})
    gc.collect()  # the previous run's hooks are garbage: collect them now, not inside the timed loop
    started = time.perf_counter()
    matched: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        for hook in index.candidates(e):
            matched.setdefault(hook.id, []).append(e)
    for hook_id, mine in matched.items():
        render_events(hooks[hook_id], mine, {}, catalog, None)  # type: ignore[arg-type]  # ids are list positions
    elapsed = time.perf_counter() - started
    assert list(matched) == [0], "exactly the one matching hook must match"
    return elapsed / len(events) * 1e6, compile_sec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--hooks", default="1,100,1000,10000")
    args = parser.parse_args()
    print(common.machine(), file=sys.stderr)
    params = {"plan": f"plan-{MATCHING_CAMPAIGN}", "seats": 5}
    events = [event(i) for i in range(args.events)]
    for e in events:
        e["event_data"]["params"] = params
    rows = []
    series = (("no custom_data values", {}, False), ("custom_data of 5 template parameters", FIVE_PARAMETERS, False),
              ("payload filters (eq + gte), no values", {}, True))
    for label, values, payload in series:
        reference = 0.0
        for n in (int(x) for x in args.hooks.split(",")):
            runs = [per_event_us(n, values, events, payload) for _ in range(args.runs)]
            us = common.median([r[0] for r in runs])
            reference = reference or us
            rows.append([label, n, us, f"{us / reference:.2f}x", common.median([r[1] for r in runs]) * 1000])
    print(common.table(f"Matching and rendering per event (one hook of N matches; {args.events:,} events, "
                       f"median of {args.runs})",
                       ["hooks' filters and custom_data", "active hooks", "µs per event", "of 1 hook",
                        "compile all hooks ms"], rows))


if __name__ == "__main__":
    main()
