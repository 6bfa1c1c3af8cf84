"""A transport that delivers to a list in memory: the test double of the worker's and API's tests, and demos.

It keeps the real contract (one `send` = one attempt, failures raised as DeliveryError) so code
tested against it behaves the same against HTTP or a broker. It is used directly, not registered.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from actionhooks.delivery.base import Batch, Receipt, Transport
from actionhooks.errors import DeliveryError
from actionhooks.settings import Settings

__all__ = ["StubTransport"]


class StubTransport(Transport[Any]):
    """Records every attempt; `fail_next(n, error)` makes the next n attempts raise `error`.

    `attempts` holds every batch `send` was called with, `batches` only the delivered ones, in order.
    Safe to share between threads.
    """

    type: ClassVar[str] = "stub"

    def __init__(self, config: Any = None, settings: Settings | None = None) -> None:
        super().__init__(config, settings or Settings())
        self._lock = threading.Lock()
        self._attempts: list[Batch] = []
        self._batches: list[Batch] = []
        self._failures: list[DeliveryError] = []
        self._closed = False

    def fail_next(self, times: int, error: DeliveryError) -> None:
        """Make the next `times` attempts raise `error` (after the failures already queued)."""
        if times < 0:
            raise ValueError(f"times must not be negative, got {times}")
        with self._lock:
            self._failures.extend([error] * times)

    def send(self, batch: Batch) -> Receipt:
        started = time.perf_counter()
        with self._lock:
            self._attempts.append(batch)
            if self._failures:
                raise self._failures.pop(0)
            self._batches.append(batch)
        return Receipt(latency_ms=(time.perf_counter() - started) * 1000, payload=list(batch.events))

    @property
    def attempts(self) -> list[Batch]:
        with self._lock:
            return list(self._attempts)

    @property
    def batches(self) -> list[Batch]:
        with self._lock:
            return list(self._batches)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every delivered event, in delivery order."""
        with self._lock:
            return [event for batch in self._batches for event in batch.events]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
