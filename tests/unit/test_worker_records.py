"""A job's RQ records as the threaded worker writes them, against a real Redis (embedded):
the start records once, and never after the job was failed from outside its thread (a
cold shutdown, a stuck thread) or ended; and how a job is handed to its thread."""

from __future__ import annotations

import threading
import time

from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from shared.keys import JOB_FUNCTION
from shared.serializers import JobSerializer
from tests.harness import wait_for
from workers import worker_classes
from workers.cancel import CancelScope
from workers.worker_classes import Running, ThreadedWorker


def running_job(client) -> tuple[ThreadedWorker, Running]:
    queue = Queue("model", connection=client, serializer=JobSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=({"request_id": "r-1"},), job_id="job-1")
    worker = ThreadedWorker([queue], connection=client)
    running = Running(job, queue, CancelScope(job.id))
    worker._running[job.id] = running
    return worker, running


def write_start(worker: ThreadedWorker, running: Running) -> str | None:
    """What the worker's monitor does for a job that has run a while: record its start, once.
    Its execution's id; None once the job has ended."""
    worker._write_starts([running])
    return running.execution_id


def test_the_start_is_written_once(client) -> None:
    worker, running = running_job(client)
    first = write_start(worker, running)
    assert first is not None
    assert write_start(worker, running) is first
    assert StartedJobRegistry("model", connection=client).get_job_ids() == ["job-1"]
    assert running.job.get_status(refresh=True) == "started"
    assert client.hget(running.job.key, "worker_name").decode() == worker.name


def test_no_start_is_written_after_the_job_was_failed_from_outside(client) -> None:
    worker, running = running_job(client)
    worker._fail(running, "The worker was stopped (cold shutdown) while running this job.")
    assert write_start(worker, running) is None  # e.g. its request reached the wire just then
    assert running.job.get_status(refresh=True) == "failed"
    assert StartedJobRegistry("model", connection=client).count == 0
    assert FailedJobRegistry("model", connection=client).get_job_ids() == ["job-1"]


def test_the_dequeuing_thread_waits_briefly_for_the_job_to_reach_its_provider(client, monkeypatch) -> None:
    worker, running = running_job(client)
    seen = []

    def run(each: Running) -> None:  # the job, up to its provider request being sent
        seen.append(threading.current_thread())
        each.scope.on_request_sent()

    monkeypatch.setattr(worker_classes, "HANDOVER_WAIT", 30.0)  # only the job's progress ends the wait
    monkeypatch.setattr(worker, "perform_job", lambda job, queue, execution: run(running))
    worker._hand_over(running)
    assert seen and seen[0] is not threading.current_thread()  # sent from its own thread, before the return
    assert running.sent.is_set()

    ended = Running(running.job, running.queue, CancelScope("job-2"))  # ends without calling its provider
    monkeypatch.setattr(worker, "perform_job", lambda job, queue, execution: None)
    worker._running[ended.job.id] = ended
    worker._hand_over(ended)
    wait_for(ended.sent.is_set, timeout=10, message="the job's end")

    stuck = Running(running.job, running.queue, CancelScope("job-3"))
    monkeypatch.setattr(worker_classes, "HANDOVER_WAIT", 0.05)
    monkeypatch.setattr(worker._job_threads, "submit", lambda *args: None)  # no thread ever takes it
    began = time.monotonic()
    worker._hand_over(stuck)
    assert not stuck.sent.is_set() and time.monotonic() - began < 1.0


def test_a_job_that_ended_before_the_monitor_looked_leaves_no_record(client):
    worker, running = running_job(client)
    worker._record_outcome(running, None)  # it answered: its records go
    assert write_start(worker, running) is None  # the monitor, a moment too late
    assert not client.exists(running.job.key)
    assert StartedJobRegistry("model", connection=client).count == 0
    assert not client.keys("rq:execution*") and not client.keys("rq:results:*")


def test_the_worker_shows_busy_while_a_job_runs_idle_otherwise_and_never_over_a_suspension(client):
    worker, running = running_job(client)
    worker.register_birth()

    def state() -> str:
        return client.hget(worker.key, "state").decode()

    worker._show_state()
    assert state() == "busy"
    del worker._running[running.job.id]
    worker._show_state()
    assert state() == "idle"
    worker._took_jobs = True  # a job came and went between two looks
    worker._show_state()
    assert state() == "busy"
    worker.set_state("suspended")  # `rq suspend`, as RQ's own check shows it
    worker._show_state()
    assert state() == "suspended"
