"""What recording a source's recent captures adds to a group commit (the console's "Last captured events").

One capture transaction (GroupCommitter._write: identities, intake row, route signal, commit) of a batch
of N pixel events, timed with the events tagged with their source (so put_captures records and prunes
them) and untagged (the reference: the same transaction without the record), alternating in the same
run on one SQLite file (the embedded default), after the source already holds its 50 entries so every
timed commit also prunes. Prints a Markdown table of medians. Run: `.venv/bin/python bench/source_captures.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

from actionhooks.storage.committer import GroupCommitter, _Pending
from actionhooks.storage.db import make_engine, session_factory
from actionhooks.storage.intake import Offered
from actionhooks.storage.migrate import upgrade


def pixel(n: int) -> dict[str, Any]:
    return {"event_id": os.urandom(16).hex(), "event_type": "open", "event_date": "2026-01-01T00:00:00.000000000Z",
            "account_id": 23, "list_id": 1, "profile_id": f"p-{n}", "is_test": False,
            "event_data": {"visitor_id": os.urandom(16).hex(), "pixel_id": 5, "ip": "203.0.113.0",
                           "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "is_bot": False, "proxy": None}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        upgrade(engine)
        committer = GroupCommitter(session_factory(engine), dedup_window_sec=60, on_signal=lambda _: None)
        rows = []
        try:
            for size in (1, 10, 100, 1000):
                timings: dict[bool, list[float]] = {True: [], False: []}
                for repeat in range(args.repeats + 5):
                    for recorded in (True, False):
                        pending = _Pending(23, Offered([pixel(n) for n in range(size)], []),
                                           5 if recorded else None, {}, frozenset(), None)  # type: ignore[arg-type]
                        start = time.perf_counter()
                        committer._write([pending])
                        if repeat >= 5:  # warm-up: the source fills its 50 entries first
                            timings[recorded].append((time.perf_counter() - start) * 1000)
                with_record, without = common.median(timings[True]), common.median(timings[False])
                rows.append((size, without, with_record, with_record - without))
        finally:
            committer.close()
            engine.dispose()
    print(common.table("Recent captures per source: cost per capture transaction (SQLite)",
                       ["events in the batch", "without record ms", "with record ms", "added ms"], rows))


if __name__ == "__main__":
    sys.exit(main())
