"""Reads hammered against writes from threads: the harness of the concurrency tests of shared state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def hammer(write: Callable[[], None], read: Callable[[], str | None], *, writes: int, readers: int = 2) -> list[str]:
    """Call `write` in a loop on one thread and `read` in loops on `readers` threads until `writes` writes
    are done (or 60 s passed); returns what went wrong: a read's complaint, or an exception it raised."""
    stop = threading.Event()
    problems: list[str] = []
    done = 0

    def writer() -> None:
        nonlocal done
        while not stop.is_set():
            write()
            done += 1

    def reader() -> None:
        while not stop.is_set():
            try:
                complaint = read()
            except Exception as exc:  # e.g. what an in-place mutation raises: "dictionary changed size"
                complaint = repr(exc)
            if complaint:
                problems.append(complaint)
                return

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(readers)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while done < writes and time.monotonic() < deadline and not problems:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(30)
    if done < writes and not problems:
        problems.append(f"only {done} of {writes} writes within 60 s")
    return problems
