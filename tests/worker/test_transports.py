"""The worker's transport cache: a transport retired while a send uses it closes after the send."""

from __future__ import annotations

import threading

from actionhooks.delivery.base import Batch
from actionhooks.delivery.http import HttpTransport
from actionhooks.hooks.matching import CompiledHook, compile_hook
from actionhooks.settings import Settings
from actionhooks.worker.transports import TransportCache
from tests.support.receiver import Receiver, Reply

SETTINGS = Settings(HOOK_ALLOW_PRIVATE_TARGETS=True, HOOK_HTTP_TIMEOUT_SEC=10)


def _hook(url: str, version: int = 1) -> CompiledHook:
    return compile_hook({"id": 7, "account_id": 1, "version": version, "active": True, "name": "h",
                         "actions": ["open"], "delivery": {"type": "http", "url": url}}, SETTINGS)


def test_a_transport_retired_during_a_send_closes_only_after_the_send_succeeded(receiver: Receiver) -> None:
    cache = TransportCache(SETTINGS)
    receiver.default = Reply(delay=1.0)  # the answer takes a second: the send is in flight meanwhile
    hook = _hook(receiver.url)
    outcome: list[object] = []
    used: list[HttpTransport] = []

    def send() -> None:
        with cache.using(hook) as transport:
            assert isinstance(transport, HttpTransport)
            used.append(transport)
            try:
                outcome.append(transport.send(Batch(hook_id=7, batch_id="b1", attempt=1, events=[{"n": 1}])))
            except Exception as exc:
                outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    receiver.wait_for(1)
    # When the hook changes (version 2) while its request is in flight
    cache.retire(hook.id, keep_version=2)
    # Then the transport stays open for the send, which succeeds, and is closed when it ended
    assert not used[0].closed
    sender.join(15)
    assert [type(o).__name__ for o in outcome] == ["Receipt"]
    assert used[0].closed
    # And the next use gets a new transport for version 2
    receiver.default = Reply()
    with cache.using(_hook(receiver.url, version=2)) as fresh:
        assert fresh is not used[0]
    assert len(cache) == 1
    # An idle transport is closed at once when retired, and close_all closes the rest
    cache.retire(hook.id)
    assert len(cache) == 0
    assert fresh.closed
    cache.close_all()
