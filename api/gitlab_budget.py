"""How many calls this API process may make to GitLab: ``gitlab.max_calls_per_second``.

A sliding window of granted call times: at most N calls start in any rolling
second. A call over that waits for the first free slot if it is at most
``max_wait`` away (the slot is reserved for it, so waiters are served in order),
and is refused at once otherwise: a flood of unknown tokens or made-up project
references then costs GitLab at most N calls a second per process, and the
flood's surplus gets 503 instead of holding request threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW = 1.0  # seconds


class CallBudget:
    def __init__(self, per_second: int, *, max_wait: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        self.per_second = per_second
        self.max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        # Start times granted, oldest first; some may lie ahead (reserved by waiting calls).
        # Never more than about 2 * per_second: anything older than a window is dropped.
        self._granted: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Wait for a slot, at most ``max_wait``; False (at once) if none comes within it."""
        with self._lock:
            now = self._clock()
            while self._granted and self._granted[0] <= now - WINDOW:
                self._granted.popleft()
            start = now
            if len(self._granted) >= self.per_second:
                # The N-th most recent grant must be a whole window older than this one.
                start = max(now, self._granted[-self.per_second] + WINDOW)
            if start - now > self.max_wait:
                return False
            self._granted.append(start)
        if start > now:
            self._sleep(start - now)
        return True
