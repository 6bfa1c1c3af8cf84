"""The token bucket of a rate-limited hook, and operational events never reaching their own hook."""

from __future__ import annotations

from typing import Any

import pytest

from actionhooks.events import operational_event
from actionhooks.hooks.matching import CompiledHook, compile_hook
from actionhooks.settings import Settings
from actionhooks.storage.tables import HookDeliveryState
from actionhooks.worker.batching import batch_limits
from actionhooks.worker.control import Gate, take


def _hook(hook_id: int = 1, actions: tuple[str, ...] = ("click",), **delivery: Any) -> CompiledHook:
    return compile_hook(
        {"id": hook_id, "account_id": 23, "name": f"h{hook_id}", "active": True, "actions": list(actions),
         "filters": {}, "custom_data": {},
         "delivery": {"type": "http", "url": "https://hooks.example.com/in", **delivery}},
        Settings(),
    )


def _gate(tokens: float) -> Gate:
    return Gate(state=HookDeliveryState(hook_id=1, tokens=0.0, tokens_at=0.0, hold_until=0.0), tokens=tokens)


def test_a_claim_takes_what_the_bucket_pays_for_and_says_when_to_come_back() -> None:
    hook = _hook(rate_limit={"events_per_sec": 50})  # refills 49/s, a bucket of 9.8 events, batches of 4
    assert batch_limits(hook)[0] == 4
    gate = _gate(9.8)
    assert take(gate, hook, [4, 4, 4], now=100.0) == 2
    assert gate.state.tokens == pytest.approx(1.8)
    assert gate.wake_in == pytest.approx(2.2 / 49)  # until 4 tokens are there again
    assert gate.state.hold_until == pytest.approx(100.0 + 2.2 / 49)


def test_a_batch_larger_than_the_bucket_goes_alone_on_a_full_bucket_and_leaves_a_debt() -> None:
    hook = _hook(rate_limit={"events_per_sec": 50})
    gate = _gate(9.8)
    assert take(gate, hook, [100, 4], now=0.0) == 1
    assert gate.state.tokens == pytest.approx(-90.2)
    assert gate.wake_in == pytest.approx((4 + 90.2) / 49)
    assert take(_gate(9.0), hook, [100], now=0.0) == 0  # not before the bucket is full


def test_requests_per_sec_counts_requests_whatever_they_carry() -> None:
    hook = _hook(rate_limit={"requests_per_sec": 20})  # refills 19.6/s, a bucket of 3.92 requests
    assert batch_limits(hook)[0] == 100  # batches keep their size
    gate = _gate(3.92)
    assert take(gate, hook, [100, 100, 100, 100, 100], now=0.0) == 3
    assert gate.wake_in == pytest.approx(0.08 / 19.6)


def test_an_unlimited_hook_takes_everything() -> None:
    assert take(Gate(state=HookDeliveryState(hook_id=1)), _hook(), [100] * 8, now=0.0) == 8


def test_a_hook_never_matches_an_operational_event_about_itself() -> None:
    ops = ("hook_paused", "batch_failed")
    watcher, watched = _hook(1, ops), _hook(2, ops)
    about_2 = operational_event("hook_paused", account_id=23, hook_id=2, hook_name="h2", error="x", now=0.0)
    assert watcher.matches(about_2)
    assert not watched.matches(about_2)
    assert about_2["event_date"] == "1970-01-01T00:00:00.000000Z"
    assert about_2["event_data"] == {"hook_id": 2, "hook_name": "h2", "error": "x"}
