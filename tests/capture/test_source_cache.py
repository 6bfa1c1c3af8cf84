"""The source cache: one look-up per key at a time, an expired entry answers while it is refreshed."""

from __future__ import annotations

import asyncio
import threading
import time

from actionhooks.capture.context import SourceCache

KEY = "src_" + "a" * 26


class Lookups:
    """A look-up that blocks until released and counts its calls (stands in for the database)."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = threading.Event()

    def __call__(self, key: str) -> None:
        self.calls += 1
        assert self.release.wait(30)


def test_concurrent_hits_on_a_missing_entry_share_one_look_up() -> None:
    lookups = Lookups()
    cache = SourceCache(lookups, ttl=60)

    async def scenario() -> list[object]:
        hits = [asyncio.create_task(cache.find(KEY)) for _ in range(50)]
        await asyncio.sleep(0.05)
        lookups.release.set()
        return await asyncio.gather(*hits)

    assert asyncio.run(scenario()) == [None] * 50
    assert lookups.calls == 1


def test_an_expired_entry_answers_at_once_while_one_refresh_runs() -> None:
    lookups = Lookups()
    cache = SourceCache(lookups, ttl=60)
    lookups.release.set()

    async def scenario() -> None:
        await cache.find(KEY)
        lookups.release.clear()
        source, _expires = cache._entries[KEY]
        cache._entries[KEY] = (source, time.monotonic() - 1)  # expired a second ago (within one more ttl)
        answers = [await asyncio.wait_for(cache.find(KEY), 5) for _ in range(20)]  # none waits for the look-up
        assert answers == [None] * 20
        lookups.release.set()
        deadline = time.monotonic() + 30
        while cache._entries[KEY][1] < time.monotonic():  # the one refresh stores a fresh entry
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert lookups.calls == 2


def test_a_key_that_cannot_be_ours_costs_no_look_up() -> None:
    lookups = Lookups()
    lookups.release.set()
    assert asyncio.run(SourceCache(lookups).find("not-a-key")) is None
    assert lookups.calls == 0
