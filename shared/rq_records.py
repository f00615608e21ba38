"""RQ's records: every read and write the gateway makes of RQ's Redis layout to serve requests.

The gateway uses RQ as its queue and worker registry, and RQ's own tools as the
operator's view: ``rq info -S json``, rq-dashboard (``python -m tools.rq_dashboard``),
``rq suspend``. It writes a gateway job's records itself, fewer than RQ would, and
only those that one of those tools, or the clean-up of abandoned jobs, reads. Key
names come from ``shared.keys``; the layout is RQ 3.0's (pinned), and
``tests/unit/test_rq_records.py`` holds what is written here to what RQ itself
writes and reads. Jobs that are not the gateway's (anything else put on a model's
queue) keep RQ's own records, written by RQ.

A gateway job, step by step:

- **enqueue** (the API, inside the admission script, in the same atomic step as
  the rate limits: ``JobEnqueue``): the job's hash ``rq:job:<id>`` with the fields
  RQ's enqueue writes (status ``queued``, origin, the job function and its payload
  as JSON, timeouts, the failure callback), expiring after the job's queued time to
  live; its id pushed on ``rq:queue:<model>``. Read by the worker (the payload), by
  ``rq info`` (the queue's count) and rq-dashboard (the queue's jobs). Not written:
  ``rq:queues``, the set of queue names those tools list, which the worker keeps
  (``register_queue``, at registration and with each heartbeat): nobody can be
  admitted to a queue no worker serves.
- **dequeue** (the worker, ``claim_next``): ``BLMOVE`` from the queue to the
  worker's claim list (``aigw:claimed:<worker>``), then the job's hash is read;
  a dequeue whose reply never arrived is put back at the front (``put_back``).
- **start** (``record_start``; by the worker's monitor once a job has run a
  quarter of a second, so that a job finishing sooner writes none of it): status
  ``started``, ``started_at`` and ``worker_name`` on the job, and the job made
  persistent (its queued expiry could cut a long stream); an execution
  ``rq:execution:<job>:<execution>`` expiring with its heartbeat; its entry in the
  started registry ``rq:wip:<model>`` (``rq info``'s "executing", rq-dashboard's
  started jobs, and the clean-up that fails the jobs of a host that died) and in the
  worker's ``rq:worker:<name>:executions`` (its current jobs, in rq-dashboard);
  the job leaves the claim list, since the execution now says whose it is.
- **success** (``record_success``): the job's hash is deleted, with its execution
  and registry entries if its start was recorded, or its claim-list entry if not.
  Its answer goes to the client through the reply stream, on the same pipeline,
  ahead of these (``workers.job_end``); nothing else reads it.
- **failure** (``record_failure``): as RQ records a failure (status ``failed``,
  the failed registry ``rq:failed:<model>`` for ``jobs.failure_ttl``, the failure
  in ``rq:results:<id>``, which is what rq-dashboard shows as the job's error), and
  the start's records or the claim-list entry removed.
- **abandonment** (``workers.salvage``, with ``forget_worker``, ``requeue`` and
  ``record_failure``): a dead worker's registration removed, each of its jobs
  either put back at the front of its queue (``requeue``) or recorded failed; RQ's
  own clean-up of the started registry (run by every worker's maintenance) fails a
  started job whose heartbeat expired, through the job's failure callback.

The worker's own records: its registration ``rq:worker:<name>`` and the sets
``rq:workers`` and ``rq:workers:<model>`` (RQ's ``register_birth`` and
``register_death``; ``live_workers`` counts the registrations that have not
expired), renewed with its heartbeat (``heartbeat``: every 10 s, also the started
jobs' execution and registry entries); its state, ``busy`` while it runs any job
and ``idle`` otherwise, written only when that changes (the monitor looks every
quarter of a second); ``rq suspend`` looked at once a second (``is_suspended``).
The API (admission, ``/ready``) and the metrics read two facts of these
records: ``queue_depth`` and ``live_workers``.

What operators read of these records (``python -m workers.inspect``, ``GET /admin/queues``) is
``shared.rq_inspection``'s: the same layout, read for people rather than for serving.

Not written for a gateway job, since nobody reads them: RQ's results stream for a
success and the finished registry (the reply stream carries the answer), the
worker's statistics (``successful_job_count``, ``failed_job_count``,
``total_working_time``), the per-job execution registry ``rq:executions:<id>``,
and the dependents, dependencies and callbacks RQ handles at every job's end (a
gateway job has none but its failure callback). ``rq info`` therefore shows
every queue with 0 finished and every worker with "0 finished, 0 failed";
rq-dashboard's finished count and its workers' successful and failed job counts
and working time read 0 as well (a job that is not the gateway's still counts).
"""

from __future__ import annotations

import datetime
import time
import uuid
from dataclasses import dataclass

from redis import Redis
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure

from shared.jobs import JobRequest
from shared.keys import (
    JOB_FAILURE_CALLBACK,
    JOB_FUNCTION,
    RQ_QUEUES_KEY,
    RQ_SUSPENDED_KEY,
    RQ_WORKERS_KEY,
    rq_execution_key,
    rq_job_key,
    rq_queue_key,
    rq_started_registry_key,
    rq_worker_executions_key,
    rq_worker_key,
    rq_workers_by_queue_key,
)
from shared.serializers import JobSerializer

# RQ's default timeout for running a callback; written as RQ writes it for an on_failure Callback.
CALLBACK_TIMEOUT = 60

# The enqueue's Lua, run inside the admission script (``shared.ratelimit``), which calls
# ``write_refusal`` when a limit refuses (a full queue is the answer then) and ``write``
# before it takes any allowance. KEYS: the queue, the job's hash. ARGV: the job id, the
# queue's limit, the job's time to live in seconds, then the hash's fields and values.
# The push's own answer is the queue's depth: a job over the limit is taken back at
# once, inside the same script, so no worker can see it.
ENQUEUE_LUA = """
local function write_refusal(keys, argv)
  local depth = redis.call('LLEN', keys[1])
  if depth >= tonumber(argv[2]) then return depth end
end
local function write(keys, argv)
  local depth = redis.call('RPUSH', keys[1], argv[1])
  if depth > tonumber(argv[2]) then
    redis.call('RPOP', keys[1])
    return depth - 1
  end
  redis.call('HSET', keys[2], unpack(argv, 4))
  redis.call('EXPIRE', keys[2], argv[3])
end
"""
# The same, ahead of the jobs waiting: workers take from the left (``claim_next``).
ENQUEUE_FRONT_LUA = ENQUEUE_LUA.replace("'RPUSH'", "'LPUSH'").replace("'RPOP'", "'LPOP'")


def utc(epoch: float) -> str:
    """A time as RQ writes one (``rq.utils.utcformat``)."""
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class JobEnqueue:
    """A gateway job's enqueue, for the admission script to write (``ENQUEUE_LUA``): refused,
    with the queue's depth, when the queue already holds ``max_depth`` jobs."""

    keys: list[str]
    args: list
    lua: str = ENQUEUE_LUA


def job_enqueue(request: JobRequest, *, max_depth: int, result_ttl: float, failure_ttl: float,
                front: bool = False) -> JobEnqueue:
    """The records of ``request``'s job as RQ's enqueue writes them (origin, status and
    times as ``Queue._prepare_for_queue`` sets them), its data plain JSON; ``front``: queued
    ahead of the waiting jobs (RQ's ``at_front``)."""
    ttl = request.rq_queue_ttl()
    enqueued = utc(request.enqueued_at)
    fields = {
        "created_at": enqueued,
        "data": JobSerializer.dumps([JOB_FUNCTION, None, [request.to_dict()], {}]),
        "success_callback_name": "",
        "failure_callback_name": JOB_FAILURE_CALLBACK,
        "stopped_callback_name": "",
        "started_at": "",
        "ended_at": "",
        "last_heartbeat": "",
        "worker_name": "",
        "group_id": "",
        "origin": request.model,
        # RQ's default description is the call with its arguments: the whole prompt.
        "description": f"{request.endpoint} model={request.model} request_id={request.request_id}",
        "enqueued_at": enqueued,
        "timeout": request.rq_job_timeout(),
        "failure_callback_timeout": CALLBACK_TIMEOUT,
        "result_ttl": int(result_ttl),
        "failure_ttl": int(failure_ttl),
        "status": JobStatus.QUEUED.value,
        "ttl": ttl,
    }
    args: list = [request.job_id, max_depth, ttl]
    for name, value in fields.items():
        args += (name, value)
    return JobEnqueue([rq_queue_key(request.model), rq_job_key(request.job_id)], args,
                      ENQUEUE_FRONT_LUA if front else ENQUEUE_LUA)


# -- what the API and the metrics read ---------------------------------------------
def queue_depth(redis: Redis, queue: str) -> int:
    """Jobs waiting in a queue (taken jobs are in their workers' claim lists, not here)."""
    return redis.llen(rq_queue_key(queue))


def live_workers(redis: Redis, queue: str) -> int:
    """Workers serving a queue whose registration has not expired. A worker killed without
    unregistering (SIGKILL) stays in RQ's set until its registration expires."""
    keys = redis.smembers(rq_workers_by_queue_key(queue))
    return redis.exists(*keys) if keys else 0


def is_suspended(redis: Redis) -> bool:
    """``rq suspend`` is in force."""
    return bool(redis.exists(RQ_SUSPENDED_KEY))


# -- a worker's records of its jobs ---------------------------------------------------
def claim_next(redis: Redis, queue: str, claim_key: str, timeout: int) -> str | None:
    """RQ's dequeue (``Queue.lmove``), into a claim list of the worker's own: the next job's
    id, or None after ``timeout`` seconds. With ``appendfsync always``, the move is on disk
    before the worker hears of it."""
    job_id = redis.blmove(rq_queue_key(queue), claim_key, timeout)
    return job_id.decode() if job_id is not None else None


def waiting_jobs(redis: Redis, queue: str) -> list[str]:
    """The ids waiting in a queue, next first."""
    return [job_id.decode() for job_id in redis.lrange(rq_queue_key(queue), 0, -1)]


def take_waiting(redis: Redis, queue: str, job_id: str) -> bool:
    """Take one waiting job off its queue for the caller to answer: False if a worker (or
    anyone) took it first."""
    return bool(redis.lrem(rq_queue_key(queue), 1, job_id))


def registered_workers(redis: Redis, worker_names: list[str]) -> int:
    """How many of these workers have registered and not expired (or said they died)."""
    return redis.exists(*(rq_worker_key(name) for name in worker_names)) if worker_names else 0


def put_back(pipe, queue: str, job_id: str) -> None:
    """A job taken but never received (its dequeue's reply was lost) goes back to the front."""
    pipe.lpush(rq_queue_key(queue), job_id)


def new_execution_id() -> str:
    return uuid.uuid4().hex


def record_start(pipe, job: Job, execution_id: str, *, worker_name: str, claim_key: str | None,
                 heartbeat_ttl: int, at: float | None = None) -> None:
    """Put a running job's start records on ``pipe`` (see the module's docstring)."""
    at = time.time() if at is None else at
    started = utc(at)
    composite = f"{job.id}:{execution_id}"
    job.worker_name, job.started_at = worker_name, datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
    pipe.hset(rq_job_key(job.id), mapping={"status": JobStatus.STARTED.value, "started_at": started,
                                           "last_heartbeat": started, "worker_name": worker_name})
    pipe.persist(rq_job_key(job.id))
    pipe.hset(rq_execution_key(job.id, execution_id), mapping={
        "id": execution_id, "job_id": job.id, "created_at": at, "last_heartbeat": at, "worker_name": worker_name})
    pipe.expire(rq_execution_key(job.id, execution_id), heartbeat_ttl)
    pipe.zadd(rq_started_registry_key(job.origin), {composite: int(at) + heartbeat_ttl})
    pipe.sadd(rq_worker_executions_key(worker_name), composite)
    pipe.expire(rq_worker_executions_key(worker_name), heartbeat_ttl)  # a host that dies takes its set with it
    if claim_key is not None:
        pipe.lrem(claim_key, 1, job.id)


def forget_start(pipe, job_id: str, execution_id: str, *, queue: str, worker_name: str) -> None:
    """Remove a job's start records (its execution and registry entries)."""
    composite = f"{job_id}:{execution_id}"
    pipe.zrem(rq_started_registry_key(queue), composite)
    pipe.delete(rq_execution_key(job_id, execution_id))
    pipe.srem(rq_worker_executions_key(worker_name), composite)


def record_success(pipe, job_id: str, *, queue: str, worker_name: str, execution_id: str | None,
                   claim_key: str | None) -> None:
    """A gateway job that answered its client: its records go."""
    if execution_id is not None:
        forget_start(pipe, job_id, execution_id, queue=queue, worker_name=worker_name)
    elif claim_key is not None:
        pipe.lrem(claim_key, 1, job_id)
    pipe.delete(rq_job_key(job_id))


def record_failure(pipe, job: Job, exc_string: str, *, worker_name: str, execution_id: str | None,
                   claim_key: str | None) -> None:
    """A failed job, as RQ records one (``record_job_failure``: status, failed registry for
    the job's ``failure_ttl``, the failure as its result), without its start's records."""
    if execution_id is not None:
        forget_start(pipe, job.id, execution_id, queue=job.origin, worker_name=worker_name)
    if claim_key is not None:
        pipe.lrem(claim_key, 0, job.id)
    job.ended_at = datetime.datetime.now(datetime.UTC)
    record_job_failure(job, exc_string, pipe)


def requeue(pipe, job: Job, *, queue_ttl: int, meta: dict, execution_id: str | None, worker_name: str,
            claim_key: str) -> None:
    """Put an abandoned job back at the front of its queue, queued again as if never taken."""
    pipe.hset(rq_job_key(job.id), mapping={"status": JobStatus.QUEUED.value, "started_at": "",
                                           "last_heartbeat": "", "worker_name": "", "meta": JobSerializer.dumps(meta)})
    pipe.expire(rq_job_key(job.id), queue_ttl)  # it expires as a queued job does
    if execution_id is not None:
        forget_start(pipe, job.id, execution_id, queue=job.origin, worker_name=worker_name)
    pipe.lrem(claim_key, 0, job.id)
    pipe.lpush(rq_queue_key(job.origin), job.id)


# -- a worker's own records -----------------------------------------------------------
def register_queue(pipe, queue: str) -> None:
    """List the queue where ``rq info`` and rq-dashboard look for queues."""
    pipe.sadd(RQ_QUEUES_KEY, rq_queue_key(queue))


def heartbeat(pipe, worker, started: list[tuple[str, str]], *, worker_ttl: int, heartbeat_ttl: int) -> None:
    """The worker's heartbeat (its whole registration, so one lost meanwhile, to a Redis
    restarted without its data, comes back: the API counts only registered workers), and
    its recorded jobs' (``started``: job and execution ids): their execution and started
    registry entries live on. Expiry only, never a write that could bring back a record
    the job's own thread has just removed."""
    key = rq_worker_key(worker.name)
    worker.last_heartbeat = datetime.datetime.now(datetime.UTC)
    pipe.hset(key, mapping={**worker.serialize(), "state": worker.get_state()})
    pipe.expire(key, worker_ttl)
    pipe.expire(rq_worker_executions_key(worker.name), worker_ttl)
    pipe.sadd(RQ_WORKERS_KEY, key)
    for queue in worker.queue_names():
        pipe.sadd(rq_workers_by_queue_key(queue), key)
        register_queue(pipe, queue)
    expires = int(time.time()) + heartbeat_ttl
    for job_id, execution_id in started:
        pipe.expire(rq_execution_key(job_id, execution_id), heartbeat_ttl)
        for queue in worker.queue_names():
            pipe.zadd(rq_started_registry_key(queue), {f"{job_id}:{execution_id}": expires}, xx=True)


def left_records(redis: Redis, worker_name: str, claim_key: str) -> bool:
    """A worker of this name registered and never said it died, or left jobs behind."""
    key = rq_worker_key(worker_name)
    with redis.pipeline(transaction=False) as pipe:
        pipe.hexists(key, "birth")
        pipe.hexists(key, "death")
        pipe.exists(claim_key, rq_worker_executions_key(worker_name))
        born, died, leftovers = pipe.execute()
    return bool((born and not died) or leftovers)


def forget_worker(pipe, worker_name: str, queue: str) -> None:
    """A dead worker's registration (the API stops counting it as live at once); then, on
    ``pipe``, the composite keys of its started jobs (read them with ``started_jobs``)."""
    key = rq_worker_key(worker_name)
    pipe.srem(RQ_WORKERS_KEY, key)
    pipe.srem(rq_workers_by_queue_key(queue), key)
    pipe.delete(key)
    pipe.smembers(rq_worker_executions_key(worker_name))


def started_jobs(members) -> dict[str, str]:
    """Job id -> execution id, from the members of a worker's executions set."""
    found = {}
    for member in members:
        job_id, _, execution_id = (member.decode() if isinstance(member, bytes) else member).rpartition(":")
        found[job_id] = execution_id
    return found


def still_started(pipe, worker_name: str, job_id: str, execution_id: str):
    """Whether the worker's executions still list this one (on a watching pipeline: answers at once)."""
    return pipe.sismember(rq_worker_executions_key(worker_name), f"{job_id}:{execution_id}")


def forget_started(pipe, worker_name: str) -> None:
    """The worker's executions set, once each of its jobs has been dealt with."""
    pipe.delete(rq_worker_executions_key(worker_name))
