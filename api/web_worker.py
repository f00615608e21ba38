"""The gunicorn worker class the API runs: gthread, with its threads reused last-in, first-out.

gthread hands each request to a ``concurrent.futures.ThreadPoolExecutor``, whose idle
threads take work in turn: at low load every request lands on a different thread
among dozens, whose stack and the interpreter state it last touched have gone cold,
while the thread that just finished is still handing its connection back. Here the
thread that went idle last takes the next request.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future

from gunicorn.workers.gthread import ThreadWorker


class LifoThreadPool:
    """The part of ``ThreadPoolExecutor`` gthread uses (``submit``, ``shutdown``), with
    idle threads on a stack. Work beyond ``max_workers`` waits in order."""

    def __init__(self, max_workers: int, name: str = "web"):
        self.max_workers = max_workers
        self.name = name
        self._lock = threading.Lock()
        self._idle: list[_Slot] = []  # most recently idle last
        self._backlog: deque[tuple[Future, object, tuple]] = deque()
        self._threads = 0
        self._shutdown = False

    def submit(self, fn, *args) -> Future:
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
            if self._threads >= self.max_workers:
                self._backlog.append(task)
                return future
            self._threads += 1
        threading.Thread(target=self._run, args=(task,), name=f"{self.name}-{self._threads}", daemon=True).start()
        return future

    def _run(self, task) -> None:
        slot = _Slot()
        while task is not None:
            future, fn, args = task
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as error:  # handed to the future, as ThreadPoolExecutor does
                    future.set_exception(error)
            del future, fn, args
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
        slot.wake.acquire()
        return slot.task

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            idle, self._idle = self._idle, []
            backlog = list(self._backlog) if cancel_futures else []
            if cancel_futures:
                self._backlog.clear()
        for future, _fn, _args in backlog:
            future.cancel()
        for slot in idle:
            slot.task = None
            slot.wake.release()


class _Slot:
    __slots__ = ("task", "wake")

    def __init__(self):
        self.task = None
        self.wake = threading.Lock()
        self.wake.acquire()


class GatewayThreadWorker(ThreadWorker):
    def get_thread_pool(self):
        return LifoThreadPool(self.cfg.threads)
