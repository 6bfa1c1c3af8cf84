"""Which of our errors each library exception becomes: one declared table per transport.

A transport meets one client library (httpx, pika, confluent-kafka, paho-mqtt, nats-py, redis-py,
botocore); the table of what that library raises and which DeliveryError subclass (errors.py) each
becomes sits where the transport meets it, as httpx maps httpcore's exceptions to its own. The
transport catches `table.caught` in one place and raises `table.error(exc, ...)`, chained to the
library's exception.

A row (`Case`) names exception classes, an optional condition on the exception (a reply code, an
error code) and the words of the message, a `str.format` pattern given the exception (`exc`), its
class name (`name`) and what the transport passes (`where`, the target it names...). The first
matching row wins; an exception no row matches is TargetRejected (retried, as the target may change
its mind) unless the table says otherwise. One of our own errors maps to itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from actionhooks.errors import DeliveryError, PayloadError, TargetRejected, TargetUnreachable

__all__ = ["Case", "ErrorMap"]


@dataclass(frozen=True, slots=True)
class Case:
    """Exceptions of `raised` (for which `when` holds) become `error`, with the message `say`.

    `raised` may name any class: a library that reports errors as values (librdkafka's KafkaError,
    MQTT reason codes) is mapped the same way.
    """

    raised: type[Any] | tuple[type[Any], ...]
    error: type[DeliveryError]
    say: str = "{where}: {name}: {exc}"
    when: Callable[[Any], bool] | None = None
    retryable: bool | None = None  # None: the error class's own default

    def matches(self, exc: object) -> bool:
        return isinstance(exc, self.raised) and (self.when is None or self.when(exc))


_OTHERWISE = Case(object, TargetRejected)


class ErrorMap:
    """A transport's table of library exceptions → our DeliveryError subclasses; the first matching row wins."""

    def __init__(self, *cases: Case, otherwise: Case = _OTHERWISE) -> None:
        self.cases = cases
        self.otherwise = otherwise
        caught: list[type[Any]] = []
        for case in cases:
            for raised in case.raised if isinstance(case.raised, tuple) else (case.raised,):
                if raised not in caught:
                    caught.append(raised)
        # What the transport's one `except` clause names (only BaseException subclasses can be raised).
        self.caught: tuple[type[BaseException], ...] = tuple(c for c in caught if issubclass(c, BaseException))

    def case(self, exc: object) -> Case:
        """The row that applies to `exc`."""
        return next((case for case in self.cases if case.matches(exc)), self.otherwise)

    def kind(self, exc: object) -> type[DeliveryError]:
        """The DeliveryError subclass `exc` stands for (one of ours stands for itself)."""
        return type(exc) if isinstance(exc, DeliveryError) else self.case(exc).error

    def error(
        self,
        exc: BaseException,
        *,
        delivered: frozenset[int] = frozenset(),
        status_code: int | None = None,
        **words: Any,
    ) -> DeliveryError:
        """Our error for `exc`, its message the row's `say` filled with `exc`, `name` and `words`."""
        case = self.case(exc)
        message = case.say.format(exc=exc, name=type(exc).__name__, **words)
        error = case.error(message, delivered=delivered, status_code=status_code, retryable=case.retryable)
        error.__cause__ = exc
        return error

    def batch_kind(self, failures: Iterable[object]) -> type[DeliveryError]:
        """The class of the error of a batch whose events failed with `failures`: PayloadError only when
        every event's is one (resending cannot help), else TargetUnreachable when any event's is one
        (a retry can get through), else TargetRejected."""
        kinds = {self.kind(failure) for failure in failures}
        if kinds and all(issubclass(kind, PayloadError) for kind in kinds):
            return PayloadError
        if any(issubclass(kind, TargetUnreachable) for kind in kinds):
            return TargetUnreachable
        return TargetRejected
