"""A job's RQ records as the threaded worker writes them, against a real Redis (embedded):
the start records once (from the job's thread), and never after the job was failed from
outside its thread (a cold shutdown, a stuck thread)."""

from __future__ import annotations

import pytest
import redis
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from shared.keys import JOB_FUNCTION
from shared.serializers import JobSerializer
from tools.embedded_redis import EmbeddedRedis
from workers.cancel import CancelScope
from workers.worker_classes import Running, ThreadedWorker


@pytest.fixture(scope="module")
def server():
    embedded = EmbeddedRedis().start()
    yield embedded
    embedded.stop()


@pytest.fixture
def connection(server):
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    yield client
    client.close()


def running_job(connection) -> tuple[ThreadedWorker, Running]:
    queue = Queue("model", connection=connection, serializer=JobSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=({"request_id": "r-1"},), job_id="job-1")
    worker = ThreadedWorker([queue], connection=connection)
    running = Running(job, queue, CancelScope(job.id))
    worker._running[job.id] = running
    return worker, running


def test_the_start_is_written_once(connection) -> None:
    worker, running = running_job(connection)
    first = worker._write_start(running)
    assert first is not None
    assert worker._write_start(running) is first
    assert StartedJobRegistry("model", connection=connection).get_job_ids() == ["job-1"]
    assert running.job.get_status(refresh=True) == "started"
    assert connection.hget(running.job.key, "worker_name").decode() == worker.name


def test_no_start_is_written_after_the_job_was_failed_from_outside(connection) -> None:
    worker, running = running_job(connection)
    worker._fail(running, "The worker was stopped (cold shutdown) while running this job.")
    assert worker._write_start(running) is None  # e.g. its request reached the wire just then
    assert running.job.get_status(refresh=True) == "failed"
    assert StartedJobRegistry("model", connection=connection).count == 0
    assert FailedJobRegistry("model", connection=connection).get_job_ids() == ["job-1"]
