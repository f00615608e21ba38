"""The dispatcher, against a real Redis: it enqueues inside the admission script, not
through RQ's enqueue, so what it writes must be what RQ's own enqueue writes for the same
job; and its janitor deletes read reply streams in batches, off the answers' way."""

from __future__ import annotations

import pytest
from rq import Callback, Queue
from rq.job import Job, JobStatus

from api.dispatch import Dispatcher, Janitor
from shared.config import parse_config
from shared.errors import QueueFull
from shared.keys import JOB_FAILURE_CALLBACK, JOB_FUNCTION
from shared.ratelimit import RateLimiter, Reservation, limits_for
from shared.serializers import JobSerializer
from tests.harness import wait_for
from tests.unit import redis_fixtures
from workers.jobs import on_failure

server, client = redis_fixtures.server, redis_fixtures.client

# Fields whose values differ between two enqueues of the same request by nature.
PER_ENQUEUE = {"created_at", "enqueued_at", "data", "description"}


@pytest.fixture
def dispatcher(client):
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://127.0.0.1:9/v1",
                                       "max_queue_depth": 2, "rate_limit": {"requests_per_minute": 100}}]}, {})
    return Dispatcher(config, client, client, RateLimiter(client))


def enqueue(dispatcher, request_id: str = "req-1"):
    model = dispatcher.config.models[0]
    reservation = Reservation(f"res-{request_id}", limits_for(model, None, "1", None), 10)
    return dispatcher.enqueue(model, endpoint="chat_completions", body={"model": "m", "messages": []},
                              requested_model="m", request_id=request_id, caller={"user_id": "1"},
                              reservation=reservation)


def test_the_job_is_what_rq_s_own_enqueue_writes(dispatcher, client):
    request = enqueue(dispatcher)
    ours = client.hgetall(f"rq:job:{request.job_id}")
    queue = Queue("m", connection=client, serializer=JobSerializer)
    theirs_job = queue.enqueue_call(JOB_FUNCTION, args=(request.to_dict(),), job_id="theirs",
                                    timeout=request.rq_job_timeout(), ttl=request.rq_queue_ttl(),
                                    result_ttl=int(dispatcher.config.jobs.result_ttl),
                                    failure_ttl=int(dispatcher.config.jobs.failure_ttl),
                                    on_failure=Callback(JOB_FAILURE_CALLBACK), description="d")
    theirs = client.hgetall(theirs_job.key)
    assert ours.keys() == theirs.keys()
    assert {k: v for k, v in ours.items() if k.decode() not in PER_ENQUEUE} == \
           {k: v for k, v in theirs.items() if k.decode() not in PER_ENQUEUE}
    assert abs(client.ttl(f"rq:job:{request.job_id}") - client.ttl(theirs_job.key)) <= 1
    assert client.lrange(queue.key, 0, -1) == [request.job_id.encode(), b"theirs"]
    assert client.smembers(Queue.redis_queues_keys) == {queue.key.encode()}

    job = Job.fetch(request.job_id, connection=client, serializer=JobSerializer)  # as a worker reads it
    assert job.get_status() == JobStatus.QUEUED and job.origin == "m"
    assert job.func_name == JOB_FUNCTION and list(job.args) == [request.to_dict()]
    assert job.failure_callback is on_failure


def test_a_full_queue_refuses_and_writes_nothing(dispatcher, client):
    first, second = enqueue(dispatcher, "a"), enqueue(dispatcher, "b")
    with pytest.raises(QueueFull):
        enqueue(dispatcher, "c")
    assert client.lrange("rq:queue:m", 0, -1) == [first.job_id.encode(), second.job_id.encode()]
    assert sorted(client.keys("rq:job:*")) == sorted(f"rq:job:{r.job_id}".encode() for r in (first, second))


def test_the_janitor_deletes_read_streams_in_batches_a_moment_later(client):
    keys = [f"aigw:reply:{index}" for index in range(1200)]  # more than one DEL takes
    for key in keys:
        client.xadd(key, {"kind": "result"})
    janitor = Janitor(client, batch_delay=1.0)
    for key in keys:
        janitor.discard(key)
    assert client.exists(keys[0])  # not at once: the answer goes out first
    wait_for(lambda: client.exists(*keys) == 0, timeout=10, message="every stream deleted")
