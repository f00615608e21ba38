"""A thread pool whose idle threads are reused last-in, first-out.

``concurrent.futures.ThreadPoolExecutor`` hands work to whichever idle thread
wakes first, so at low load every task lands on a different thread among many,
whose stack and the interpreter state it last touched have left the CPU's
caches. Here the thread that went idle last takes the next task. Both gunicorn's
request threads (``api.web_worker``) and the RQ worker's job threads
(``workers.worker_classes``) use it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future


class LifoThreadPool:
    """The part of ``ThreadPoolExecutor`` its callers use (``submit``, ``shutdown``).

    ``max_workers``: at most this many threads, further work waits in order (None: no
    limit). ``idle_seconds``: a thread idle this long ends (None: never).
    """

    def __init__(self, max_workers: int | None = None, *, name: str = "pool", idle_seconds: float | None = None):
        self.max_workers = max_workers
        self.name = name
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._idle: list[_Slot] = []  # the most recently idle last
        self._backlog: deque[tuple[Future, Callable, tuple]] = deque()
        self._threads = 0
        self._started = 0
        self._shutdown = False

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        task = (future, fn, args)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            if self._idle:
                slot = self._idle.pop()
                slot.task = task
                slot.wake.release()
                return future
            if self.max_workers is not None and self._threads >= self.max_workers:
                self._backlog.append(task)
                return future
            self._threads += 1
            self._started += 1
            name = f"{self.name}-{self._started}"
        threading.Thread(target=self._run, args=(task,), name=name, daemon=True).start()
        return future

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _run(self, task) -> None:
        slot = _Slot()
        while task is not None:
            future, fn, args = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as error:  # the caller's to handle, as with ThreadPoolExecutor
                    future.set_exception(error)
            del task, future, fn, args  # hold nothing of the last task while idle
            task = self._next(slot)

    def _next(self, slot: _Slot):
        with self._lock:
            if self._backlog:
                return self._backlog.popleft()
            if self._shutdown:
                self._threads -= 1
                return None
            slot.task = None
            self._idle.append(slot)
        if slot.wake.acquire(timeout=-1 if self.idle_seconds is None else self.idle_seconds):
            return slot.task
        with self._lock:
            if slot in self._idle:  # nobody picked this thread meanwhile: it ends
                self._idle.remove(slot)
                self._threads -= 1
                return None
        slot.wake.acquire()  # picked just as it timed out: its task is on the way
        return slot.task

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Idle threads end; running tasks finish (``wait`` is not supported: threads are daemons)."""
        with self._lock:
            self._shutdown = True
            idle, self._idle = self._idle, []
            self._threads -= len(idle)
            cancelled = list(self._backlog) if cancel_futures else []
            if cancel_futures:
                self._backlog.clear()
        for future, _fn, _args in cancelled:
            future.cancel()
        for slot in idle:
            slot.task = None
            slot.wake.release()


class _Slot:
    """An idle thread: it waits on ``wake`` (held while idle) for ``task``."""

    __slots__ = ("task", "wake")

    def __init__(self):
        self.task = None
        self.wake = threading.Lock()
        self.wake.acquire()
