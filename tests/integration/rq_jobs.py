"""Plain RQ job functions the worker tests enqueue directly (the worker imports them)."""

from __future__ import annotations

import time

from rq import get_current_job


def report(seconds: float = 0.0) -> dict:
    """Sleep, then say which job RQ thinks is running and when it ran."""
    started = time.time()
    time.sleep(seconds)
    return {"job_id": get_current_job().id, "started": started, "ended": time.time()}


def busy(seconds: float) -> str:
    """Run Python for a while in small steps (an async timeout can land between them)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
    return "done"


def fail(message: str) -> None:
    raise ValueError(message)
