"""The GitLab call budget: at most N calls start in any rolling second; a call over it waits at
most the allowed wait, in order, or is refused at once. A fake clock keeps these exact."""

from __future__ import annotations

import threading

import pytest

from api.gitlab_budget import CallBudget


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))


def budget(per_second: int, clock: FakeClock, max_wait: float = 1.0) -> CallBudget:
    return CallBudget(per_second, max_wait=max_wait, clock=clock, sleep=clock.sleep)


def test_calls_within_the_budget_never_wait():
    clock = FakeClock()
    calls = budget(5, clock)
    assert all(calls.take() for _ in range(5))
    assert clock.slept == []


def test_calls_over_it_wait_for_their_slot_in_order_then_are_refused_at_once():
    clock = FakeClock()
    calls = budget(3, clock)
    assert [calls.take() for _ in range(3)] == [True] * 3
    clock.now += 0.25
    assert [calls.take() for _ in range(3)] == [True] * 3  # each waits for a slot a second after a granted one
    assert clock.slept == [0.75, 0.75, 0.75]
    assert calls.take() is False  # the next slot is more than a second away: refused without waiting
    assert clock.slept == [0.75, 0.75, 0.75]


def test_no_rolling_second_ever_holds_more_than_the_budget():
    clock = FakeClock()
    calls = budget(4, clock)
    starts = []
    for step in range(400):  # 40 calls a second offered for 10 s
        clock.now = 100.0 + step * 0.025
        before = len(clock.slept)
        if calls.take():
            starts.append(clock.now + (clock.slept[-1] if len(clock.slept) > before else 0.0))
    starts.sort()
    for i in range(len(starts) - 4):
        assert starts[i + 4] - starts[i] >= 1.0 - 1e-9
    assert 4 * 10 <= len(starts) <= 4 * 11


def test_the_wait_is_bounded_by_max_wait():
    clock = FakeClock()
    calls = budget(2, clock, max_wait=0.1)
    assert calls.take() and calls.take()
    clock.now += 0.95
    assert calls.take() and clock.slept == [0.05]
    assert calls.take() and clock.slept == [0.05, 0.05]  # the second slot frees at the same time
    assert calls.take() is False


def test_the_record_stays_small():
    clock = FakeClock()
    calls = budget(10, clock)
    for step in range(10_000):
        clock.now = 100.0 + step * 0.001
        calls.take()
    assert len(calls._granted) <= 2 * 10


def test_threads_share_one_budget():
    calls = budget(20, FakeClock(), max_wait=0.0)  # time stands still: exactly 20, whatever the threads do
    granted = []
    lock = threading.Lock()

    def take():
        ok = calls.take()
        with lock:
            granted.append(ok)

    threads = [threading.Thread(target=take) for _ in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert granted.count(True) == 20


def test_a_budget_needs_at_least_one_call():
    with pytest.raises(ValueError):
        CallBudget(0)
