"""Per-thread job timeouts: a penalty fires its own exception into its own thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from rq.timeouts import JobTimeoutException

import workers.timeouts as timeouts
from workers.cancel import HARD_TIMEOUT, CancelScope, enter_scope, leave_scope
from workers.timeouts import ThreadDeathPenalty, expire_overdue

FAR_FUTURE = 10**9  # a monotonic "now" past every real deadline
LOOP_LIMIT = 5.0  # a job loop that is never interrupted gives up after this long


@pytest.fixture(autouse=True)
def no_armed_penalties() -> Iterator[None]:
    """Penalties are process-global: start and end every test with none armed."""
    with timeouts._lock:
        assert not timeouts._armed, "a penalty was left armed before this test"
    yield
    with timeouts._lock:
        leftover = dict(timeouts._armed)
        timeouts._armed.clear()
    assert not leftover, "the test left a penalty armed"


class Job:
    """A job thread: arms a penalty and loops on short sleeps until something stops it."""

    def __init__(self, timeout: float | None, job_id: str, scope: CancelScope | None = None):
        self.timeout = timeout
        self.job_id = job_id
        self.scope = scope
        self.armed = threading.Event()
        self.release = threading.Event()  # ends the loop normally
        self.penalty: ThreadDeathPenalty | None = None
        self.error: BaseException | None = None
        self.finished_normally = False
        self.thread = threading.Thread(target=self._run, name=f"job-{job_id}", daemon=True)

    def start(self) -> Job:
        self.thread.start()
        assert self.armed.wait(2), "the job never armed its penalty"
        return self

    def _body(self) -> None:
        limit = time.monotonic() + LOOP_LIMIT
        while not self.release.is_set() and time.monotonic() < limit:
            if self.scope is not None:
                self.scope.sleep(0.005)
            else:
                time.sleep(0.005)

    def _run(self) -> None:
        token = enter_scope(self.scope) if self.scope is not None else None
        try:
            self.penalty = ThreadDeathPenalty(self.timeout, JobTimeoutException, job_id=self.job_id)
            with self.penalty:
                self.armed.set()
                self._body()
            self.finished_normally = True
        except JobTimeoutException as exc:
            self.error = exc
        finally:
            self.armed.set()
            if token is not None:
                leave_scope(token)

    def join(self) -> None:
        self.thread.join(3)
        assert not self.thread.is_alive(), f"job {self.job_id} did not stop"


def test_expire_overdue_raises_the_timeout_in_the_job_thread() -> None:
    job = Job(1, "j1").start()
    assert expire_overdue(now=FAR_FUTURE) == ["j1"]
    job.join()
    assert job.finished_normally is False
    assert isinstance(job.error, JobTimeoutException)
    assert type(job.error) is not JobTimeoutException  # a per-penalty subclass
    assert type(job.error).__name__ == "JobTimeoutException"
    assert "maximum timeout of 1 seconds" in str(job.error)
    assert job.penalty is not None and job.penalty.fired is True


def test_nothing_fires_before_the_deadline() -> None:
    job = Job(1, "j1").start()
    try:
        assert expire_overdue(now=time.monotonic()) == []
        assert job.penalty is not None and job.penalty.fired is False
    finally:
        job.release.set()
        job.join()
    assert job.finished_normally is True
    assert job.error is None


def test_each_penalty_raises_its_own_message() -> None:
    short, long = Job(1, "short").start(), Job(7, "long").start()
    assert sorted(expire_overdue(now=FAR_FUTURE)) == ["long", "short"]
    short.join()
    long.join()
    assert "maximum timeout of 1 seconds" in str(short.error)
    assert "maximum timeout of 7 seconds" in str(long.error)
    assert type(short.error) is not type(long.error)
    # the shared class is not patched
    assert str(JobTimeoutException("plain")) == "plain"
    assert JobTimeoutException("plain").args == ("plain",)


def test_only_overdue_penalties_fire() -> None:
    short, long = Job(1, "short").start(), Job(100, "long").start()
    try:
        assert expire_overdue(now=time.monotonic() + 10) == ["short"]
        short.join()
        assert isinstance(short.error, JobTimeoutException)
        assert long.thread.is_alive()
        assert long.penalty is not None and long.penalty.fired is False
    finally:
        long.release.set()
        long.join()
    assert long.finished_normally is True
    assert long.error is None


def test_a_fired_penalty_fires_only_once() -> None:
    job = Job(1, "j1").start()
    assert expire_overdue(now=FAR_FUTURE) == ["j1"]
    assert expire_overdue(now=FAR_FUTURE) == []
    job.join()


def test_a_penalty_whose_context_exited_is_not_fired() -> None:
    job = Job(1, "done")
    job.release.set()  # the body returns at once
    job.thread.start()
    job.join()
    assert job.finished_normally is True
    assert expire_overdue(now=FAR_FUTURE) == []
    assert job.penalty is not None and job.penalty.fired is False
    assert job.error is None


def test_a_thread_that_left_its_penalty_keeps_running_unharmed() -> None:
    left = threading.Event()
    carry_on = threading.Event()
    outcome: dict = {}

    def run() -> None:
        try:
            penalty = ThreadDeathPenalty(1, JobTimeoutException, job_id="left")
            with penalty:
                pass
            outcome["penalty"] = penalty
            left.set()
            assert carry_on.wait(2)
            total = 0
            for i in range(20_000):  # plenty of bytecode for a stray async exception to land in
                total += i
            outcome["total"] = total
        except BaseException as exc:  # recorded for the assertion
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert left.wait(2)
    assert expire_overdue(now=FAR_FUTURE) == []
    carry_on.set()
    thread.join(2)
    assert not thread.is_alive()
    assert "error" not in outcome
    assert outcome["total"] == sum(range(20_000))
    assert outcome["penalty"].fired is False


@pytest.mark.parametrize("timeout", [0, -1, None])
def test_no_timeout_arms_nothing(timeout) -> None:
    penalty = ThreadDeathPenalty(timeout, JobTimeoutException, job_id="never")
    with penalty:
        with timeouts._lock:
            assert id(penalty) not in timeouts._armed
        assert expire_overdue(now=FAR_FUTURE) == []
    assert penalty.fired is False


def test_the_deadline_is_the_timeout_from_entry() -> None:
    penalty = ThreadDeathPenalty(30, JobTimeoutException, job_id="x")
    assert penalty.expires_at == float("inf")
    before = time.monotonic()
    with penalty:
        after = time.monotonic()
        assert before + 30 <= penalty.expires_at <= after + 30
        with timeouts._lock:
            assert timeouts._armed.get(id(penalty)) is penalty
    with timeouts._lock:
        assert id(penalty) not in timeouts._armed


def test_firing_cancels_the_job_scope_and_wakes_a_scope_sleep() -> None:
    scope = CancelScope("scoped")
    job = Job(2, "scoped", scope=scope).start()
    assert expire_overdue(now=FAR_FUTURE) == ["scoped"]
    job.join()
    assert scope.cancelled is True
    assert scope.reason == HARD_TIMEOUT
    assert isinstance(job.error, JobTimeoutException)
    assert "maximum timeout of 2 seconds" in str(job.error)


def test_a_penalty_without_a_job_id_reports_an_empty_id() -> None:
    job = Job(1, "")
    job.job_id = None  # type: ignore[assignment]
    job.thread.start()
    assert job.armed.wait(2)
    assert expire_overdue(now=FAR_FUTURE) == [""]
    job.join()
    assert isinstance(job.error, JobTimeoutException)
