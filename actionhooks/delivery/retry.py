"""When to try a failed batch again: policy as data plus one pure function (no Celery, no clock).

`max_attempts` counts every attempt, the first included (arq's `max_tries`, not dramatiq's
`max_retries`): HOOK_RETRY_TIMES=4 means one send and at most three retries. After attempt *n*
fails the wait is `periods[min(n-1, len-1)]`, so the last period repeats (outpost's
ScheduledBackoff). A receiver's Retry-After (only ever set from a 429 or 503) replaces that period
but is clamped into `[min(periods), max(periods)]` ("within the period list's bounds", README
HOOK_RETRY_PERIOD_SEC), so a receiver can neither hammer us with 0 nor park a batch for a day.

`next_delay` spreads a period by ±JITTER (README HOOK_RETRY_PERIOD_SEC: each wait gets ±10% jitter), so the
batches that failed together when a receiver went down do not all come back in the same second;
a receiver's Retry-After is only ever lengthened (up to +10%), never brought forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from actionhooks.errors import DeliveryError
from actionhooks.settings import Settings

__all__ = ["JITTER", "RetryPolicy"]

JITTER = 0.1


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a batch gets and the waits between them."""

    max_attempts: int
    periods: Sequence[float]

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not self.periods:
            raise ValueError("periods must name at least one wait")
        if any(p < 0 for p in self.periods):
            raise ValueError(f"periods must not be negative, got {list(self.periods)}")
        # A tuple keeps the frozen policy hashable and immune to the caller mutating its list.
        object.__setattr__(self, "periods", tuple(float(p) for p in self.periods))

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy of HOOK_RETRY_TIMES and HOOK_RETRY_PERIOD_SEC."""
        return cls(max_attempts=settings.HOOK_RETRY_TIMES, periods=list(settings.HOOK_RETRY_PERIOD_SEC))

    def delay_after(self, attempt: int, error: DeliveryError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up.

        `attempt` is the 1-based number of the attempt that just failed with `error`.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        if attempt >= self.max_attempts or not error.retryable:
            return None
        if error.retry_after is not None:
            return min(max(error.retry_after, min(self.periods)), max(self.periods))
        return self.periods[min(attempt - 1, len(self.periods) - 1)]

    def next_delay(self, attempt: int, error: DeliveryError, u: float) -> float | None:
        """`delay_after` with jitter; `u` is uniform in [0, 1) (random.random() in the worker)."""
        delay = self.delay_after(attempt, error)
        if delay is None:
            return None
        if error.retry_after is not None:
            return delay * (1 + JITTER * u)
        return delay * (1 - JITTER + 2 * JITTER * u)
