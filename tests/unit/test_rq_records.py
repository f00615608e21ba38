"""RQ's records as the gateway writes them (shared.rq_records), against a real Redis
(embedded): what RQ's own code and tools read of them. If an RQ upgrade changes its
layout, these fail."""

from __future__ import annotations

import time

import pytest
from rq import Callback, Queue, Worker
from rq.executions import WORKER_EXECUTIONS_KEY_TEMPLATE, Execution
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.suspension import WORKERS_SUSPENDED
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

from shared import keys, rq_records
from shared.jobs import JobRequest
from shared.keys import JOB_FAILURE_CALLBACK, JOB_FUNCTION, claimed_jobs_key
from shared.ratelimit import RateLimiter, Reservation, WriteRefused
from shared.serializers import JobSerializer
from workers.jobs import on_failure
from workers.worker_classes import ThreadedWorker

QUEUE = "m"
# Fields whose values differ between two enqueues of the same request by nature.
PER_ENQUEUE = {"created_at", "enqueued_at", "data", "description"}


def a_request(job_id: str = "job-1", *, seconds: float = 30.0) -> JobRequest:
    return JobRequest(job_id=job_id, request_id="req-1", model=QUEUE, requested_model=QUEUE,
                      endpoint="chat.completions", body={"model": QUEUE, "messages": []},
                      deadline=time.time() + seconds, caller={"user_id": "1"})


def enqueue(client, request: JobRequest, *, max_depth: int = 10) -> None:
    """As the admission does: the job's records handed to the admission script."""
    write = rq_records.job_enqueue(request, max_depth=max_depth, result_ttl=60, failure_ttl=86400)
    RateLimiter(client).take(Reservation.of([], 0), write)


def test_key_names_are_rq_s_own(client):
    assert keys.rq_queue_key(QUEUE) == Queue(QUEUE, connection=client).key
    assert keys.rq_job_key("j") == Job.key_for("j")
    assert keys.rq_started_registry_key(QUEUE) == StartedJobRegistry(QUEUE, connection=client).key
    assert keys.rq_failed_registry_key(QUEUE) == FailedJobRegistry(QUEUE, connection=client).key
    assert keys.rq_results_key("j") == Result.get_key("j")
    assert keys.rq_worker_key("w") == Worker.redis_worker_namespace_prefix + "w"
    assert keys.rq_workers_by_queue_key(QUEUE) == WORKERS_BY_QUEUE_KEY % QUEUE
    assert keys.rq_worker_executions_key("w") == WORKER_EXECUTIONS_KEY_TEMPLATE.format("w")
    assert keys.rq_execution_key("j", "e") == Execution("e", "j", connection=client).key
    assert keys.RQ_QUEUES_KEY == Queue.redis_queues_keys
    assert keys.RQ_WORKERS_KEY == REDIS_WORKER_KEYS
    assert keys.RQ_SUSPENDED_KEY == WORKERS_SUSPENDED


def test_the_job_is_what_rq_s_own_enqueue_writes(client):
    request = a_request()
    enqueue(client, request)
    ours = client.hgetall(f"rq:job:{request.job_id}")
    queue = Queue(QUEUE, connection=client, serializer=JobSerializer)
    theirs_job = queue.enqueue_call(JOB_FUNCTION, args=(request.to_dict(),), job_id="theirs",
                                    timeout=request.rq_job_timeout(), ttl=request.rq_queue_ttl(),
                                    result_ttl=60, failure_ttl=86400,
                                    on_failure=Callback(JOB_FAILURE_CALLBACK), description="d")
    theirs = client.hgetall(theirs_job.key)
    assert ours.keys() == theirs.keys()
    assert {k: v for k, v in ours.items() if k.decode() not in PER_ENQUEUE} == \
           {k: v for k, v in theirs.items() if k.decode() not in PER_ENQUEUE}
    assert abs(client.ttl(f"rq:job:{request.job_id}") - client.ttl(theirs_job.key)) <= 1
    assert client.lrange(queue.key, 0, -1) == [request.job_id.encode(), b"theirs"]

    job = Job.fetch(request.job_id, connection=client, serializer=JobSerializer)  # as a worker reads it
    assert job.get_status() == JobStatus.QUEUED and job.origin == QUEUE
    assert job.func_name == JOB_FUNCTION and list(job.args) == [request.to_dict()]
    assert job.failure_callback is on_failure
    assert abs(job.enqueued_at.timestamp() - request.enqueued_at) < 0.001
    assert job.description == "chat.completions model=m request_id=req-1"


def test_a_queue_at_its_limit_takes_nothing_and_the_refused_job_is_never_written(client):
    enqueue(client, a_request("a"), max_depth=1)
    with pytest.raises(WriteRefused) as refused:
        enqueue(client, a_request("b"), max_depth=1)
    assert refused.value.answer == 1
    assert client.lrange("rq:queue:m", 0, -1) == [b"a"]
    assert not client.exists("rq:job:b")


def a_worker(client, name: str = "m.host.1") -> ThreadedWorker:
    worker = ThreadedWorker([QUEUE], connection=client, name=name, concurrency=4)
    worker.claim_list_key = claimed_jobs_key(worker.name)
    worker.register_birth()
    return worker


def claimed(client, worker: ThreadedWorker, request: JobRequest) -> Job:
    enqueue(client, request)
    assert client.blmove("rq:queue:m", worker.claim_list_key, 1).decode() == request.job_id
    return Job.fetch(request.job_id, connection=client, serializer=JobSerializer)


def start(client, worker: ThreadedWorker, job: Job) -> str:
    execution_id = rq_records.new_execution_id()
    with client.pipeline() as pipe:
        rq_records.record_start(pipe, job, execution_id, worker_name=worker.name, claim_key=worker.claim_list_key,
                                heartbeat_ttl=35)
        pipe.execute()
    return execution_id


def test_a_worker_registers_its_queue_where_rq_info_looks(client):
    a_worker(client)
    assert client.smembers("rq:queues") == {b"rq:queue:m"}
    assert [queue.name for queue in Queue.all(connection=client)] == [QUEUE]


def test_a_recorded_start_is_what_rq_s_tools_read(client):
    worker = a_worker(client)
    job = claimed(client, worker, a_request())
    execution_id = start(client, worker, job)
    assert StartedJobRegistry(QUEUE, connection=client).get_job_ids() == [job.id]
    assert client.lrange(worker.claim_list_key, 0, -1) == []  # the execution says whose it is now
    again = Job.fetch(job.id, connection=client, serializer=JobSerializer)
    assert again.get_status() == JobStatus.STARTED and again.worker_name == worker.name
    assert client.ttl(job.key) == -1  # a long stream outlives the job's queued expiry
    seen = Worker.find_by_key(worker.key, connection=client, serializer=JobSerializer)
    (execution,) = seen.get_current_executions()
    assert execution.id == execution_id and execution.worker_name == worker.name
    assert seen.get_current_job().id == job.id  # what rq-dashboard shows as the worker's current job
    assert 0 < client.ttl(keys.rq_execution_key(job.id, execution_id)) <= 35


@pytest.mark.parametrize("recorded", [True, False])
def test_a_success_leaves_nothing_behind(client, recorded):
    worker = a_worker(client)
    job = claimed(client, worker, a_request())
    execution_id = start(client, worker, job) if recorded else None
    with client.pipeline(transaction=False) as pipe:
        rq_records.record_success(pipe, job.id, queue=QUEUE, worker_name=worker.name, execution_id=execution_id,
                                  claim_key=worker.claim_list_key)
        pipe.execute()
    assert not client.exists(job.key, keys.rq_results_key(job.id))
    assert client.lrange(worker.claim_list_key, 0, -1) == []
    assert StartedJobRegistry(QUEUE, connection=client).get_job_count(cleanup=False) == 0
    assert FinishedJobRegistry(QUEUE, connection=client).get_job_count(cleanup=False) == 0
    assert not client.smembers(worker.executions_key)
    assert not client.keys("rq:execution:*") and not client.keys("rq:executions:*")


def test_a_failure_is_recorded_as_rq_records_one(client):
    worker = a_worker(client)
    job = claimed(client, worker, a_request())
    execution_id = start(client, worker, job)
    with client.pipeline() as pipe:
        rq_records.record_failure(pipe, job, "upstream_error: the provider failed", worker_name=worker.name,
                                  execution_id=execution_id, claim_key=worker.claim_list_key)
        pipe.execute()
    assert FailedJobRegistry(QUEUE, connection=client).get_job_ids() == [job.id]
    assert StartedJobRegistry(QUEUE, connection=client).get_job_count(cleanup=False) == 0
    failed = Job.fetch(job.id, connection=client, serializer=JobSerializer)
    assert failed.get_status() == JobStatus.FAILED
    result = failed.latest_result()  # what rq-dashboard shows as the job's error
    assert result.type == Result.Type.FAILED and "upstream_error" in result.exc_string
    assert 86400 - 5 < client.ttl(job.key) <= 86400


def test_the_heartbeat_brings_a_lost_registration_back_and_keeps_started_jobs(client):
    worker = a_worker(client)
    job = claimed(client, worker, a_request())
    execution_id = start(client, worker, job)
    client.delete(worker.key, "rq:workers", "rq:workers:m", "rq:queues")  # a Redis restarted without its data
    with client.pipeline(transaction=False) as pipe:
        rq_records.heartbeat(pipe, worker, [(job.id, execution_id)], worker_ttl=35, heartbeat_ttl=70)
        pipe.execute()
    assert rq_records.live_workers(client, QUEUE) == 1
    assert client.hget(worker.key, "state") == worker.get_state().encode()  # rq info shows its state again
    assert client.smembers("rq:queues") == {b"rq:queue:m"}
    assert 35 < client.ttl(keys.rq_execution_key(job.id, execution_id)) <= 70
    score = client.zscore(keys.rq_started_registry_key(QUEUE), f"{job.id}:{execution_id}")
    assert time.time() + 60 < score <= time.time() + 71


def test_queue_depth_and_live_workers_read_rq_s_records(client):
    assert rq_records.queue_depth(client, QUEUE) == 0 and rq_records.live_workers(client, QUEUE) == 0
    worker = a_worker(client)
    enqueue(client, a_request("a"))
    enqueue(client, a_request("b"))
    assert rq_records.queue_depth(client, QUEUE) == 2
    assert rq_records.live_workers(client, QUEUE) == 1
    client.delete(worker.key)  # its registration expired: killed without a word
    assert rq_records.live_workers(client, QUEUE) == 0
