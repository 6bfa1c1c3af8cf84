"""Every exception actionhooks raises, in one tree.

    ActionHooksError
    ├── SettingsError            main.json / environment problems, all of them at once (.problems)
    ├── HookValidationError      a hook or request body that breaks a rule pydantic cannot express (.errors)
    │   └── EventsRejected       POST /events events that break the event rules (.reasons, counted in /metrics)
    ├── NotFound                 an object of this account does not exist (or belongs to another account)
    ├── TemplateError
    │   ├── TemplateSyntaxError  a custom_data template that cannot be compiled (at save -> 422)
    │   └── TemplateRenderError  a template that broke a sandbox rule or a size/time bound while rendering
    │       └── OutputTooLong    its output (or what it could be) passes the size bound it was given
    └── DeliveryError            one delivery attempt failed (.retryable, .retry_after, .status_code)
        ├── TargetUnreachable    DNS, connect, TLS, timeout, broker down              retryable
        ├── TargetRejected       non-2xx, success_regex mismatch, nack, Kafka delivery error
        ├── PayloadError         GET URL over 8 KB, message too large for the broker   never retried
        └── TargetForbidden      SSRF guard refused the resolved address              never retried

Errors carry structured fields so the API can turn them into `{loc, msg}` bodies and the worker can
decide on retries without parsing text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ActionHooksError",
    "DeliveryError",
    "EventsRejected",
    "HookValidationError",
    "NotFound",
    "OutputTooLong",
    "PayloadError",
    "SettingsError",
    "SettingsProblem",
    "TargetForbidden",
    "TargetRejected",
    "TargetUnreachable",
    "TemplateError",
    "TemplateRenderError",
    "TemplateSyntaxError",
]


class ActionHooksError(Exception):
    """Root of every error actionhooks raises on purpose."""


@dataclass(frozen=True)
class SettingsProblem:
    """One problem of a settings source: the key it concerns, what is wrong, and a hint when we have one."""

    key: str
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        hint = f" (did you mean {self.suggestion!r}?)" if self.suggestion else ""
        return f"{self.key}: {self.message}{hint}"


class SettingsError(ActionHooksError):
    """Raised when main.json or an ACTIONHOOKS_* variable is unreadable, unknown or invalid."""

    def __init__(self, problems: Sequence[SettingsProblem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} settings problem(s){where}:\n{lines}")


class HookValidationError(ActionHooksError):
    """Raised when a request is well-formed JSON but breaks a rule; each error is (loc, msg)."""

    def __init__(self, errors: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        self.errors = [(tuple(loc), msg) for loc, msg in errors]
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in self.errors))


class EventsRejected(HookValidationError):
    """Raised when events break the event rules; `reasons` ("too_long", "nul_character", "integer_range",
    "invalid") is a small fixed set, so /metrics can count rejections by it without unbounded labels."""

    def __init__(self, errors: Sequence[tuple[tuple[str | int, ...], str]], reasons: set[str]) -> None:
        super().__init__(errors)
        self.reasons = frozenset(reasons)


class NotFound(ActionHooksError):
    """Raised when an object does not exist for the caller's account."""

    def __init__(self, kind: str, ident: object) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"{kind} {ident} not found")


class TemplateError(ActionHooksError):
    """Base of template problems; `key` is the custom_data key the template belongs to, when known."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class TemplateSyntaxError(TemplateError):
    """Raised at save time when a template has a syntax error or names an unknown parameter."""


class TemplateRenderError(TemplateError):
    """Raised at render time when a template breaks the sandbox or exceeds its size or time bound."""


class OutputTooLong(TemplateRenderError):
    """Raised when a template's output would pass the characters it may produce (checked before it is built)."""


class DeliveryError(ActionHooksError):
    """Raised by a transport when one attempt failed.

    `retryable` tells the worker whether another attempt can help; `retry_after` is a receiver's
    Retry-After (seconds) when it sent one; `status_code` is the HTTP status when there was one.
    `delivered` lists the indexes of events of the batch that did reach the target (brokers deliver
    event by event), so a retry resends only the rest.
    """

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        delivered: frozenset[int] = frozenset(),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after
        self.delivered = delivered
        if retryable is not None:
            self.retryable = retryable


class TargetUnreachable(DeliveryError):
    """Raised when the target could not be reached: DNS, connect, TLS, timeout, broker down."""


class TargetRejected(DeliveryError):
    """Raised when the target answered but refused: non-2xx, success_regex mismatch, nack, Kafka error."""


class PayloadError(DeliveryError):
    """Raised when the payload can never be sent as is (GET URL over 8 KB, message too large)."""

    retryable = False


class TargetForbidden(DeliveryError):
    """Raised when the SSRF guard refuses a resolved address (private targets not allowed)."""

    retryable = False
