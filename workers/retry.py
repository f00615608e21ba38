"""Retry policy for upstream calls, composed from small tenacity pieces.

- retry only what is worth retrying (``Retryable``: connection errors, read
  timeouts before the deadline, 408/429/5xx/529);
- wait with exponential backoff and jitter, or exactly what ``Retry-After`` asks;
- stop after the model's ``retries.attempts``, or before a wait would cross the
  request's deadline: a retry that cannot finish in time is not worth starting.

A model with several deployments runs one such policy over all of them
(``workers.deployments``): the next attempt goes to a deployment not tried yet
at once (``switch``), and waits only when it goes back to one already tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential_jitter

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})


class Retryable(Exception):
    """An attempt failed in a way another attempt may fix."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: float | None = None,
                 message: str = ""):
        super().__init__(reason)
        self.reason = reason  # a short label: "connect", "read_timeout", "status_503", ...
        self.status = status
        self.retry_after = retry_after
        self.message = message


class stop_before_deadline(stop_base):
    """Stop when the coming wait would leave no time before the deadline."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.time):
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock() + retry_state.upcoming_sleep >= self.deadline


class wait_retry_after(wait_base):
    """Honour a ``Retry-After`` the upstream sent; otherwise defer to ``fallback``."""

    def __init__(self, fallback: wait_base):
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, Retryable) and error.retry_after is not None:
            return max(0.0, error.retry_after)
        return self.fallback(retry_state)


class wait_unless_switching(wait_base):
    """No wait when ``switch()`` says the next attempt goes elsewhere (another deployment)."""

    def __init__(self, switch: Callable[[], bool], otherwise: wait_base):
        self.switch = switch
        self.otherwise = otherwise

    def __call__(self, retry_state: RetryCallState) -> float:
        return 0.0 if self.switch() else self.otherwise(retry_state)


def upstream_retrying(*, attempts: int, deadline: float, initial_wait: float = 0.25,
                      max_wait: float = 8.0, sleep: Callable[[float], None] = time.sleep,
                      switch: Callable[[], bool] | None = None) -> Retrying:
    """A ``Retrying`` for one upstream call. It re-raises the last ``Retryable``.

    ``sleep`` lets a cancelled job stop waiting between attempts; ``switch``, when it answers
    True, starts the next attempt at once (it goes to a deployment not tried yet).
    """
    wait: wait_base = wait_retry_after(wait_exponential_jitter(multiplier=initial_wait, max=max_wait,
                                                               jitter=initial_wait))
    if switch is not None:
        wait = wait_unless_switching(switch, wait)
    return Retrying(
        sleep=sleep,
        retry=retry_if_exception_type(Retryable),
        stop=stop_after_attempt(attempts) | stop_before_deadline(deadline),
        wait=wait,
        reraise=True,
    )
