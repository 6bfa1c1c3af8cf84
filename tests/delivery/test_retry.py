from __future__ import annotations

import pytest

from actionhooks.delivery.retry import RetryPolicy
from actionhooks.errors import PayloadError, TargetForbidden, TargetRejected, TargetUnreachable
from actionhooks.settings import Settings

UNREACHABLE = TargetUnreachable("connection refused")


def attempts_made(policy: RetryPolicy) -> int:
    """Play a batch that always fails retryably; count the attempts the policy allows."""
    attempt = 1
    while policy.delay_after(attempt, UNREACHABLE) is not None:
        attempt += 1
    return attempt


@pytest.mark.parametrize("times", [1, 2, 4, 10])
def test_hook_retry_times_counts_every_attempt_the_first_included(times: int) -> None:
    policy = RetryPolicy.from_settings(Settings(HOOK_RETRY_TIMES=times))
    assert attempts_made(policy) == times


def test_with_four_attempts_the_third_failure_still_retries_and_the_fourth_gives_up() -> None:
    policy = RetryPolicy(max_attempts=4, periods=[15])
    assert policy.delay_after(3, UNREACHABLE) == 15
    assert policy.delay_after(4, UNREACHABLE) is None


def test_a_single_period_is_the_wait_before_every_retry() -> None:
    policy = RetryPolicy.from_settings(Settings(HOOK_RETRY_TIMES=4, HOOK_RETRY_PERIOD_SEC=15))
    assert [policy.delay_after(n, UNREACHABLE) for n in (1, 2, 3)] == [15, 15, 15]


def test_a_period_list_gives_the_wait_before_each_retry_and_its_last_value_repeats() -> None:
    policy = RetryPolicy.from_settings(Settings(HOOK_RETRY_TIMES=6, HOOK_RETRY_PERIOD_SEC=[15, 60, 300]))
    assert [policy.delay_after(n, UNREACHABLE) for n in range(1, 7)] == [15, 60, 300, 300, 300, None]


@pytest.mark.parametrize(
    "error",
    [
        PayloadError("GET URL is 9000 bytes"),
        TargetForbidden("10.0.0.1 is private"),
        TargetRejected("400 Bad Request", status_code=400, retryable=False),
    ],
)
def test_an_error_that_cannot_succeed_later_gives_up_after_the_first_attempt(error: Exception) -> None:
    policy = RetryPolicy(max_attempts=10, periods=[1])
    assert policy.delay_after(1, error) is None  # type: ignore[arg-type]


def test_a_retryable_rejection_is_retried() -> None:
    policy = RetryPolicy(max_attempts=3, periods=[5])
    assert policy.delay_after(1, TargetRejected("500", status_code=500)) == 5


def test_retry_after_within_the_bounds_replaces_the_period() -> None:
    policy = RetryPolicy(max_attempts=5, periods=[10, 60, 300])
    assert policy.delay_after(1, TargetRejected("429", status_code=429, retry_after=120)) == 120


@pytest.mark.parametrize(("retry_after", "expected"), [(0, 10), (3, 10), (86_400, 300)])
def test_retry_after_is_clamped_to_the_smallest_and_largest_periods(
    retry_after: float, expected: float) -> None:
    policy = RetryPolicy(max_attempts=5, periods=[60, 10, 300])
    error = TargetRejected("503", status_code=503, retry_after=retry_after)
    assert policy.delay_after(2, error) == expected


def test_retry_after_does_not_buy_an_attempt_beyond_the_last() -> None:
    policy = RetryPolicy(max_attempts=2, periods=[10])
    assert policy.delay_after(2, TargetRejected("429", status_code=429, retry_after=30)) is None


def test_the_policy_is_frozen_and_keeps_its_own_copy_of_the_periods() -> None:
    periods = [15.0, 60.0]
    policy = RetryPolicy(max_attempts=3, periods=periods)
    periods.append(1.0)
    assert policy.periods == (15.0, 60.0)
    assert hash(policy) == hash(RetryPolicy(max_attempts=3, periods=(15, 60)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0, "periods": [1]}, "max_attempts must be at least 1"),
        ({"max_attempts": 3, "periods": []}, "periods must name at least one wait"),
        ({"max_attempts": 3, "periods": [5, -1]}, "periods must not be negative"),
    ],
)
def test_an_invalid_policy_is_refused_with_the_field_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempt_numbers_are_one_based() -> None:
    with pytest.raises(ValueError, match="1-based"):
        RetryPolicy(max_attempts=3, periods=[1]).delay_after(0, UNREACHABLE)


@pytest.mark.parametrize("u", [0.0, 0.25, 0.5, 0.999999])
def test_retries_get_plus_or_minus_ten_percent_jitter(u: float) -> None:
    policy = RetryPolicy(max_attempts=5, periods=[10, 100])
    assert 9.0 <= policy.next_delay(1, UNREACHABLE, u) <= 11.0  # type: ignore[operator]
    assert 90.0 <= policy.next_delay(2, UNREACHABLE, u) <= 110.0  # type: ignore[operator]


def test_jitter_spans_the_whole_band_and_is_centred_on_the_period() -> None:
    policy = RetryPolicy(max_attempts=5, periods=[10])
    assert policy.next_delay(1, UNREACHABLE, 0.0) == pytest.approx(9.0)
    assert policy.next_delay(1, UNREACHABLE, 0.5) == pytest.approx(10.0)
    assert policy.next_delay(1, UNREACHABLE, 1.0) == pytest.approx(11.0)


def test_jitter_never_brings_a_retry_after_forward_and_never_revives_a_given_up_batch() -> None:
    policy = RetryPolicy(max_attempts=2, periods=[5, 300])
    asked = TargetRejected("429", status_code=429, retry_after=120)
    assert 120 <= policy.next_delay(1, asked, 0.0) <= policy.next_delay(1, asked, 0.99) <= 132  # type: ignore[operator]
    assert policy.next_delay(2, UNREACHABLE, 0.5) is None


def test_a_dns_failure_is_retried_like_a_connection_failure() -> None:
    # The HTTP and broker transports map a name that does not resolve to TargetUnreachable
    # (tests/delivery/test_http.py), which the policy retries.
    policy = RetryPolicy(max_attempts=3, periods=[5])
    assert policy.next_delay(1, TargetUnreachable("cannot resolve receiver.invalid"), 0.5) == pytest.approx(5)
