"""A job's RQ records as the threaded worker writes them, against a real Redis (embedded):
the start records once (from the job's thread), and never after the job was failed from
outside its thread (a cold shutdown, a stuck thread); and how a job is handed to its thread."""

from __future__ import annotations

import threading
import time

from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from shared.keys import JOB_FUNCTION
from shared.serializers import JobSerializer
from tests.harness import wait_for
from tests.unit import redis_fixtures
from workers.cancel import CancelScope
from workers.worker_classes import Running, ThreadedWorker

server, client = redis_fixtures.server, redis_fixtures.client


def running_job(client) -> tuple[ThreadedWorker, Running]:
    queue = Queue("model", connection=client, serializer=JobSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=({"request_id": "r-1"},), job_id="job-1")
    worker = ThreadedWorker([queue], connection=client)
    running = Running(job, queue, CancelScope(job.id))
    worker._running[job.id] = running
    return worker, running


def test_the_start_is_written_once(client) -> None:
    worker, running = running_job(client)
    first = worker._write_start(running)
    assert first is not None
    assert worker._write_start(running) is first
    assert StartedJobRegistry("model", connection=client).get_job_ids() == ["job-1"]
    assert running.job.get_status(refresh=True) == "started"
    assert client.hget(running.job.key, "worker_name").decode() == worker.name


def test_no_start_is_written_after_the_job_was_failed_from_outside(client) -> None:
    worker, running = running_job(client)
    worker._fail(running, "The worker was stopped (cold shutdown) while running this job.")
    assert worker._write_start(running) is None  # e.g. its request reached the wire just then
    assert running.job.get_status(refresh=True) == "failed"
    assert StartedJobRegistry("model", connection=client).count == 0
    assert FailedJobRegistry("model", connection=client).get_job_ids() == ["job-1"]


def test_the_dequeuing_thread_hands_a_job_over_and_waits_for_it_only_briefly(client, monkeypatch) -> None:
    worker, running = running_job(client)
    seen = []
    monkeypatch.setattr(worker, "_run", lambda each: seen.append((each, threading.current_thread())))
    worker._hand_over(running)
    assert running.begun.is_set()  # the job's thread had it before the next dequeue began
    wait_for(lambda: seen, timeout=10, message="the job thread")
    assert seen[0][0] is running and seen[0][1] is not threading.current_thread()

    stuck = Running(running.job, running.queue, CancelScope("job-2"))
    monkeypatch.setattr(worker._job_threads, "submit", lambda *args: None)  # no thread ever takes it
    began = time.monotonic()
    worker._hand_over(stuck)
    assert not stuck.begun.is_set() and time.monotonic() - began < 1.0
