"""A job timeout that works in threads.

RQ's default death penalty uses SIGALRM, which only works in the main thread;
its timer-based one starts a thread per job and patches the exception class
globally, so jobs running side by side report each other's timeouts. Here each
penalty registers a hard deadline; the worker's monitor thread calls
``expire_overdue()`` a few times a second, which first closes the job's
connections (see ``workers.cancel``) and raises the timeout exception inside the
job's thread.
"""

from __future__ import annotations

import ctypes
import threading
import time

from rq.timeouts import BaseDeathPenalty, BaseTimeoutException, JobTimeoutException

from workers.cancel import HARD_TIMEOUT, current_scope

_lock = threading.Lock()
_armed: dict[int, ThreadDeathPenalty] = {}  # id(penalty) -> penalty


class ThreadDeathPenalty(BaseDeathPenalty):
    def __init__(self, timeout, exception=JobTimeoutException, **kwargs):
        super().__init__(timeout, exception, **kwargs)
        self.job_id = kwargs.get("job_id")
        self.thread_id = threading.get_ident()
        self.scope = current_scope()
        self.expires_at = float("inf")
        self.fired = False

    def setup_death_penalty(self):
        if self._timeout is None or self._timeout <= 0:
            return
        self.expires_at = time.monotonic() + self._timeout
        with _lock:
            _armed[id(self)] = self

    def cancel_death_penalty(self):
        with _lock:
            _armed.pop(id(self), None)

    def fire(self) -> None:
        self.fired = True
        if self.scope is not None:
            self.scope.cancel(HARD_TIMEOUT)
        # SetAsyncExc takes a class, not an instance: give this job its own subclass carrying
        # its own message instead of patching the shared class. Made here, not per job: building
        # a class costs time on every job (docs/benchmarks.md), and few jobs ever time out.
        exception, message = self._exception, f"Job exceeded its maximum timeout of {self._timeout} seconds"
        own = type(exception.__name__, (exception,), {"__init__": lambda self, *a: exception.__init__(self, message)})
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.thread_id), ctypes.py_object(own))


def expire_overdue(now: float | None = None) -> list[str]:
    """Fire every penalty past its deadline; return the ids of the jobs hit."""
    now = time.monotonic() if now is None else now
    with _lock:
        overdue = [penalty for penalty in _armed.values() if penalty.expires_at <= now]
        for penalty in overdue:
            del _armed[id(penalty)]
            # Under the lock: a job finishing right now waits in cancel_death_penalty, so
            # the exception lands inside the penalty's __exit__ (which swallows it), never
            # later in RQ's bookkeeping.
            penalty.fire()
    return [penalty.job_id or "" for penalty in overdue]


__all__ = ["BaseTimeoutException", "JobTimeoutException", "ThreadDeathPenalty", "expire_overdue"]
