"""The upstream retry policy, driven with fake attempts and a recording sleep."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from workers.retry import RETRYABLE_STATUSES, Retryable, stop_before_deadline, upstream_retrying


class Attempts:
    """A fake upstream call: raises the scripted outcomes in turn, then returns ``result``."""

    def __init__(self, *outcomes: BaseException, result: str = "ok"):
        self.outcomes = list(outcomes)
        self.result = result
        self.calls = 0
        self.raised: list[BaseException] = []

    def __call__(self) -> str:
        self.calls += 1
        if self.outcomes:
            error = self.outcomes.pop(0)
            self.raised.append(error)
            raise error
        return self.result


def retrying(*, attempts: int = 3, deadline: float | None = None, initial_wait: float = 0.01,
             max_wait: float = 8.0):
    waits: list[float] = []
    policy = upstream_retrying(attempts=attempts, deadline=time.time() + 60 if deadline is None else deadline,
                               initial_wait=initial_wait, max_wait=max_wait, sleep=waits.append)
    return policy, waits


def test_retries_a_retryable_up_to_attempts_then_reraises_the_last_one() -> None:
    errors = [Retryable(f"status_50{i}", status=500 + i) for i in range(5)]
    call = Attempts(*errors)
    policy, waits = retrying(attempts=3)
    with pytest.raises(Retryable) as info:
        policy(call)
    assert call.calls == 3
    assert info.value is call.raised[-1] is errors[2]
    assert len(waits) == 2


def test_a_later_success_is_returned() -> None:
    call = Attempts(Retryable("status_503", status=503), Retryable("connect"), result="answer")
    policy, waits = retrying(attempts=3)
    assert policy(call) == "answer"
    assert call.calls == 3
    assert len(waits) == 2


def test_one_attempt_means_no_retry() -> None:
    call = Attempts(Retryable("status_503", status=503), result="never")
    policy, waits = retrying(attempts=1)
    with pytest.raises(Retryable):
        policy(call)
    assert call.calls == 1
    assert waits == []


@pytest.mark.parametrize("error", [ValueError("bad"), KeyError("k"), RuntimeError("boom")])
def test_other_exceptions_are_not_retried(error: Exception) -> None:
    call = Attempts(error, result="never")
    policy, waits = retrying(attempts=5)
    with pytest.raises(type(error)) as info:
        policy(call)
    assert info.value is error
    assert call.calls == 1
    assert waits == []


def test_a_non_retryable_after_retries_stops_at_once() -> None:
    call = Attempts(Retryable("status_502", status=502), ValueError("then this"), result="never")
    policy, waits = retrying(attempts=5)
    with pytest.raises(ValueError, match="then this"):
        policy(call)
    assert call.calls == 2
    assert len(waits) == 1


def test_stops_when_the_coming_wait_would_cross_the_deadline() -> None:
    call = Attempts(*[Retryable("status_429", status=429, retry_after=5.0) for _ in range(5)])
    policy, waits = retrying(attempts=5, deadline=time.time() + 2.0)
    with pytest.raises(Retryable):
        policy(call)
    assert call.calls == 1  # a 5 s wait cannot end before a deadline 2 s away
    assert waits == []


def test_retries_while_the_waits_fit_before_the_deadline() -> None:
    call = Attempts(*[Retryable("status_429", status=429, retry_after=0.5) for _ in range(2)], result="ok")
    policy, waits = retrying(attempts=5, deadline=time.time() + 30)
    assert policy(call) == "ok"
    assert waits == [0.5, 0.5]


def test_a_deadline_already_passed_allows_no_retry() -> None:
    call = Attempts(Retryable("connect"), result="never")
    policy, waits = retrying(attempts=5, deadline=time.time() - 1)
    with pytest.raises(Retryable):
        policy(call)
    assert call.calls == 1
    assert waits == []


@pytest.mark.parametrize(("upcoming", "stops"), [(0.0, False), (4.9, False), (5.0, True), (6.0, True)])
def test_stop_before_deadline_compares_now_plus_wait_with_the_deadline(upcoming: float, stops: bool) -> None:
    stop = stop_before_deadline(105.0, clock=lambda: 100.0)
    assert stop(SimpleNamespace(upcoming_sleep=upcoming)) is stops


def test_wait_uses_retry_after_exactly_when_set() -> None:
    call = Attempts(Retryable("status_429", status=429, retry_after=0.37),
                    Retryable("status_503", status=503, retry_after=1.25), result="ok")
    policy, waits = retrying(attempts=3, initial_wait=0.01)
    assert policy(call) == "ok"
    assert waits == [0.37, 1.25]


def test_a_negative_retry_after_waits_zero() -> None:
    call = Attempts(Retryable("status_429", status=429, retry_after=-3.0), result="ok")
    policy, waits = retrying(attempts=2)
    assert policy(call) == "ok"
    assert waits == [0.0]


def test_retry_after_is_honoured_above_max_wait() -> None:
    call = Attempts(Retryable("status_429", status=429, retry_after=12.0), result="ok")
    policy, waits = retrying(attempts=2, max_wait=1.0)
    assert policy(call) == "ok"
    assert waits == [12.0]


def test_without_retry_after_the_wait_is_exponential_with_jitter() -> None:
    call = Attempts(*[Retryable("connect") for _ in range(3)], result="ok")
    policy, waits = retrying(attempts=4, initial_wait=0.1, max_wait=8.0)
    assert policy(call) == "ok"
    assert len(waits) == 3
    # initial * 2**n plus jitter in [0, initial]
    for n, wait in enumerate(waits):
        assert 0.1 * 2**n <= wait <= 0.1 * 2**n + 0.1 + 1e-9, waits


def test_backoff_is_capped_by_max_wait() -> None:
    call = Attempts(*[Retryable("connect") for _ in range(4)], result="ok")
    policy, waits = retrying(attempts=5, initial_wait=1.0, max_wait=1.5)
    assert policy(call) == "ok"
    assert all(wait <= 1.5 for wait in waits), waits
    assert waits[-1] == 1.5  # 8 s of backoff, capped


def test_retry_after_zero_is_not_replaced_by_backoff() -> None:
    call = Attempts(Retryable("status_429", status=429, retry_after=0.0), result="ok")
    policy, waits = retrying(attempts=2, initial_wait=5.0)
    assert policy(call) == "ok"
    assert waits == [0.0]


def test_retryable_keeps_its_fields() -> None:
    error = Retryable("status_429", status=429, retry_after=1.5, message="slow down")
    assert (error.reason, error.status, error.retry_after, error.message) == ("status_429", 429, 1.5, "slow down")
    assert str(error) == "status_429"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 529])
def test_retryable_statuses(status: int) -> None:
    assert status in RETRYABLE_STATUSES


@pytest.mark.parametrize("status", [200, 400, 401, 403, 404, 413, 422, 501])
def test_statuses_that_are_not_retried(status: int) -> None:
    assert status not in RETRYABLE_STATUSES
