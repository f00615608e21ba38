"""A job's RQ records as the threaded worker writes them, against a real Redis (embedded):
the start records once (from the job's thread), and never after the job was failed from
outside its thread (a cold shutdown, a stuck thread)."""

from __future__ import annotations

from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from shared.keys import JOB_FUNCTION
from shared.serializers import JobSerializer
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
