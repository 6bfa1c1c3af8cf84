from __future__ import annotations

import pytest

from actionhooks.delivery.errormap import Case, ErrorMap
from actionhooks.delivery.ssrf import vet_target, vetted_addresses
from actionhooks.errors import PayloadError, TargetForbidden, TargetRejected, TargetUnreachable


class Refused(ConnectionError):
    code = 403


ERRORS = ErrorMap(
    Case(ConnectionError, TargetRejected, "{where} refused: {exc}", when=lambda exc: getattr(exc, "code", 0) == 403),
    Case(ConnectionError, TargetUnreachable, "{where}: {name}: {exc}"),
    Case(ValueError, PayloadError, "{where}: {exc}", retryable=False),
)


def test_the_first_matching_row_decides_and_says_the_message_chained_to_the_library_error() -> None:
    refused, lost = Refused("no"), ConnectionResetError("reset")
    error = ERRORS.error(refused, where="X", delivered=frozenset({1}))
    assert type(error) is TargetRejected
    assert error.message == "X refused: no"
    assert error.__cause__ is refused
    assert error.delivered == frozenset({1})
    assert ERRORS.error(lost, where="X").message == "X: ConnectionResetError: reset"
    assert type(ERRORS.error(lost, where="X")) is TargetUnreachable


def test_an_exception_no_row_names_is_a_retryable_rejection_and_ours_stand_for_themselves() -> None:
    assert ERRORS.kind(KeyError("k")) is TargetRejected
    assert ERRORS.error(KeyError("k"), where="X").retryable
    assert ERRORS.kind(PayloadError("too big")) is PayloadError
    assert not ERRORS.error(ValueError("bad"), where="X").retryable
    assert ERRORS.caught == (ConnectionError, ValueError)  # what the transport's one except clause names


@pytest.mark.parametrize(
    ("failures", "kind"),
    [
        ([ValueError(), PayloadError("big")], PayloadError),  # no event can ever be sent: never retried
        ([ValueError(), ConnectionResetError()], TargetUnreachable),  # a retry can get through
        ([ValueError(), Refused()], TargetRejected),
        ([KeyError()], TargetRejected),
    ],
)
def test_a_batch_error_is_payload_only_when_every_event_is_and_unreachable_when_any_is(
    failures: list[BaseException], kind: type
) -> None:
    assert ERRORS.batch_kind(failures) is kind


def test_the_ssrf_guard_fails_with_our_errors_not_an_http_librarys() -> None:
    # A broker transport catches only DeliveryError subclasses from the guard: no httpcore in sight.
    with pytest.raises(TargetForbidden):
        vetted_addresses("127.0.0.1", 80)
    with pytest.raises(TargetUnreachable, match=r"cannot resolve nowhere\.invalid"):
        vetted_addresses("nowhere.invalid", 80)
    with pytest.raises(TargetUnreachable, match=r"Redis nowhere\.invalid:6379: cannot resolve") as caught:
        vet_target("Redis", "nowhere.invalid", 6379, frozenset({0}))
    assert caught.value.delivered == frozenset({0})
