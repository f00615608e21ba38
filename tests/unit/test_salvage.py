"""Salvaging a dead worker's jobs (workers.salvage) and the worker's claim list, against a
real Redis (embedded): what becomes of each kind of job a worker can leave behind."""

from __future__ import annotations

import time

import orjson
import pytest
from rq import Callback
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from shared import rq_records
from shared.errors import WorkerLost
from shared.jobs import JobRequest
from shared.keys import (
    JOB_FAILURE_CALLBACK,
    JOB_FUNCTION,
    cancel_key,
    claimed_jobs_key,
    claimers_key,
    reply_stream_key,
)
from shared.ratelimit import MINUTE, REQUESTS, TOKENS, Limit, RateLimiter
from shared.replies import ReplyChannel
from shared.serializers import JobSerializer
from workers.salvage import (
    REQUEUE_MIN_SECONDS,
    REQUEUED,
    salvage_orphans,
    salvage_worker,
    worker_name,
)
from workers.worker_classes import ThreadedWorker

QUEUE = "model-a"
LIMITS = [Limit("model:model-a", "model 'model-a'", REQUESTS, MINUTE, 100),
          Limit("model:model-a", "model 'model-a'", TOKENS, MINUTE, 10_000)]


def enqueue(client, *, seconds: float = 30.0, tokens: int = 50) -> tuple[Job, dict]:
    """A gateway job as the API enqueues it, with a reservation taken."""
    reservation = RateLimiter(client).admit(LIMITS, tokens).to_dict()
    queue = Queue(QUEUE, connection=client, serializer=JobSerializer)
    request = JobRequest(job_id=f"job{time.monotonic_ns()}", request_id="req", model=QUEUE, requested_model=QUEUE,
                         endpoint="chat.completions", body={"messages": []}, deadline=time.time() + seconds,
                         reservation=reservation)
    job = queue.enqueue_call(JOB_FUNCTION, args=(request.to_dict(),), job_id=request.job_id,
                             on_failure=Callback(JOB_FAILURE_CALLBACK), result_ttl=30, failure_ttl=60)
    return job, reservation


def a_worker(client, pid: int = 4242) -> ThreadedWorker:
    """A worker as ``python -m workers`` makes one, registered, not working (it "died")."""
    worker = ThreadedWorker([QUEUE], connection=client, name=worker_name(QUEUE, pid, "host-1"), concurrency=4)
    worker.claim_list_key = claimed_jobs_key(worker.name)
    worker.register_birth()
    return worker


def claim(client, worker: ThreadedWorker) -> str:
    """The worker's dequeue: the next job moved to its claim list."""
    return client.blmove(f"rq:queue:{QUEUE}", worker.claim_list_key, 1).decode()


def start(client, worker: ThreadedWorker, job_id: str) -> None:
    """The worker's start records, as its monitor writes them once a job has run a moment."""
    job = Job.fetch(job_id, connection=client, serializer=JobSerializer)
    with client.pipeline() as pipe:
        rq_records.record_start(pipe, job, rq_records.new_execution_id(), worker_name=worker.name,
                                claim_key=worker.claim_list_key, heartbeat_ttl=35)
        pipe.execute()


def replies(client, job_id: str) -> list[dict]:
    return [{k.decode(): v for k, v in fields.items()} for _, fields in client.xrange(reply_stream_key(job_id))]


def token_amount(client, reservation: dict) -> int | None:
    value = client.hget(LIMITS[1].keys[1], reservation["id"])
    return None if value is None else int(value)


def salvage(client, worker: ThreadedWorker, **kwargs):
    return salvage_worker(client, worker.name, QUEUE, reply_ttl=30, **kwargs)


def test_a_started_job_that_sent_nothing_is_requeued_at_the_front_once(client):
    worker = a_worker(client)
    job, reservation = enqueue(client)
    other, _ = enqueue(client)
    assert claim(client, worker) == job.id
    start(client, worker, job.id)
    assert StartedJobRegistry(QUEUE, connection=client).get_job_count(cleanup=False) == 1

    outcome = salvage(client, worker)

    assert outcome.requeued == [job.id] and not outcome.lost
    assert client.lrange(f"rq:queue:{QUEUE}", 0, -1) == [job.id.encode(), other.id.encode()]  # at the front
    again = Job.fetch(job.id, connection=client, serializer=JobSerializer)
    assert again.get_status() == JobStatus.QUEUED and again.worker_name in (None, "")
    assert REQUEUED in again.meta
    assert 0 < client.ttl(job.key) <= 30 + 30 + 1  # expires as a queued job does
    assert StartedJobRegistry(QUEUE, connection=client).get_job_count(cleanup=False) == 0
    assert not client.exists(worker.key, worker.executions_key, worker.claim_list_key)
    assert worker.key.encode() not in client.smembers(f"rq:workers:{QUEUE}")
    assert worker.name.encode() not in client.smembers(claimers_key(QUEUE))
    assert not client.exists(reply_stream_key(job.id))  # its client heard nothing: it still waits
    assert token_amount(client, reservation) == 50  # the reservation stays for the next run to settle

    # The next worker to run it dies too: this time its client is answered.
    second = a_worker(client, pid=4243)
    assert claim(client, second) == job.id
    start(client, second, job.id)
    outcome = salvage(client, second)
    assert outcome.lost == [job.id] and not outcome.requeued
    (entry,) = replies(client, job.id)
    assert entry["kind"] == b"error"
    assert orjson.loads(entry["error"])["code"] == WorkerLost.code
    assert job.id in FailedJobRegistry(QUEUE, connection=client).get_job_ids()
    assert client.llen(f"rq:queue:{QUEUE}") == 1  # only the other job
    assert token_amount(client, reservation) == 50  # it reached the provider: its estimate stays


def test_a_claimed_job_never_started_is_requeued_and_when_lost_gets_its_allowance_back(client):
    worker = a_worker(client)
    job, reservation = enqueue(client, seconds=REQUEUE_MIN_SECONDS - 0.5)  # not time enough to run again
    assert claim(client, worker) == job.id
    outcome = salvage(client, worker)
    assert outcome.lost == [job.id]
    assert [entry["kind"] for entry in replies(client, job.id)] == [b"error"]
    assert token_amount(client, reservation) is None  # never on the wire: refunded
    assert client.zscore(LIMITS[0].keys[0], reservation["id"]) is None

    fresh = a_worker(client, pid=4300)
    waiting, _ = enqueue(client)
    assert claim(client, fresh) == waiting.id
    assert salvage(client, fresh).requeued == [waiting.id]
    assert client.lrange(f"rq:queue:{QUEUE}", 0, -1) == [waiting.id.encode()]


@pytest.mark.parametrize("left_behind", ["cancel mark", "chunk sent"])
def test_a_job_whose_client_left_or_has_part_of_a_stream_is_answered_not_requeued(client, left_behind):
    worker = a_worker(client)
    job, reservation = enqueue(client)
    claim(client, worker)
    start(client, worker, job.id)
    channel = ReplyChannel(client, job.id, ttl=30)
    if left_behind == "cancel mark":
        client.set(cancel_key(job.id), 1, ex=30)
    else:
        channel.send_chunk(b"data: {}\n\n", lasts=60)
    outcome = salvage(client, worker)
    assert outcome.lost == [job.id]
    assert replies(client, job.id)[-1]["kind"] == b"error"  # a started stream ends with the error
    assert client.llen(f"rq:queue:{QUEUE}") == 0
    assert token_amount(client, reservation) == 50


def test_a_job_whose_answer_is_out_gets_nothing_more(client):
    worker = a_worker(client)
    job, _ = enqueue(client)
    claim(client, worker)
    start(client, worker, job.id)
    ReplyChannel(client, job.id, ttl=30).send_result(200, b"{}")  # it died recording its success
    outcome = salvage(client, worker)
    assert outcome.closed == [job.id]
    assert [entry["kind"] for entry in replies(client, job.id)] == [b"result"]
    assert StartedJobRegistry(QUEUE, connection=client).get_job_count(cleanup=False) == 0


def test_salvaging_twice_finds_nothing_the_second_time(client):
    worker = a_worker(client)
    job, _ = enqueue(client)
    claim(client, worker)
    assert salvage(client, worker).requeued == [job.id]
    assert not salvage(client, worker)
    assert client.lrange(f"rq:queue:{QUEUE}", 0, -1) == [job.id.encode()]


def test_orphans_of_a_worker_whose_registration_expired_are_answered_never_requeued(client):
    dead, alive = a_worker(client, pid=1), a_worker(client, pid=2)
    gone, _ = enqueue(client)
    kept, _ = enqueue(client)
    assert claim(client, dead) == gone.id
    assert claim(client, alive) == kept.id
    client.delete(dead.key)  # its heartbeats stopped and the key expired
    assert salvage_orphans(client, QUEUE, reply_ttl=30) == [dead.name]
    assert replies(client, gone.id)[-1]["kind"] == b"error"
    assert client.llen(f"rq:queue:{QUEUE}") == 0
    assert client.lrange(alive.claim_list_key, 0, -1) == [kept.id.encode()]  # a live worker's claims stay
    assert salvage_orphans(client, QUEUE, reply_ttl=30) == []


def test_a_dequeue_whose_reply_was_lost_is_queued_again_after_two_looks(client):
    worker = a_worker(client)
    lost, _ = enqueue(client)
    ran, _ = enqueue(client)
    claim(client, worker)
    claim(client, worker)
    worker._ended_unrecorded_add(ran.id)  # it ran, but its start record never landed
    worker._reconcile_claims(client.lrange(worker.claim_list_key, 0, -1))
    assert client.lrange(worker.claim_list_key, 0, -1) == [lost.id.encode()]  # one look: maybe just dequeued
    assert client.llen(f"rq:queue:{QUEUE}") == 0
    worker._reconcile_claims(client.lrange(worker.claim_list_key, 0, -1))
    assert client.lrange(worker.claim_list_key, 0, -1) == []
    assert client.lrange(f"rq:queue:{QUEUE}", 0, -1) == [lost.id.encode()]  # never run: queued again


def test_a_worker_taking_the_name_of_a_dead_one_salvages_its_jobs_first(client):
    dead = a_worker(client, pid=77)
    job, _ = enqueue(client)
    claim(client, dead)
    start(client, dead, job.id)
    reborn = ThreadedWorker([QUEUE], connection=client, name=dead.name, concurrency=4)
    reborn.claim_list_key = claimed_jobs_key(reborn.name)
    reborn.register_birth()  # RQ itself would refuse a name whose key is alive
    assert client.lrange(f"rq:queue:{QUEUE}", 0, -1) == [job.id.encode()]
    assert StartedJobRegistry(QUEUE, connection=client).get_job_count(cleanup=False) == 0
    assert reborn.name.encode() in client.smembers(claimers_key(QUEUE))
