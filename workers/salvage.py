"""Answering for the jobs of a worker process that died while it had them.

A worker process killed outright (SIGKILL, the OOM killer, a crash in C code)
writes nothing on its way out. Its supervisor, its parent, learns of the death
at once and calls ``salvage_worker``. If the whole host died, the heartbeat
expiry is the backstop: RQ's started-registry clean-up fails the jobs that had
started, and ``salvage_orphans``, run by the surviving workers' maintenance,
those the dead one had only claimed.

A worker's jobs are in two places:

- RQ's index of its running executions (``rq:worker:<name>:executions``): jobs
  recorded as started (``shared.rq_records``);
- its claim list (``shared.keys.claimed_jobs_key``): jobs it took off the queue (``BLMOVE``,
  as RQ does into its shared intermediate list) and had not recorded as started.

Each job is then either

- requeued, once, at the front of its queue, with its rate-limit reservation
  (the worker that finally runs it settles it), when its client has received
  nothing yet (its reply stream was never written), still waits for it (no
  cancel mark) and its deadline leaves ``REQUEUE_MIN_SECONDS``; or
- answered ``502 worker_lost`` through its reply stream (a stream that already
  started ends with an error event) and recorded failed, as RQ records an
  abandoned job.

A requeued job's first run may have reached the provider before the kill: a
provider can see such a request twice.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import WatchError
from rq.exceptions import AbandonedJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import Queue

from shared import rq_records
from shared.errors import WorkerLost
from shared.jobs import RQ_QUEUE_TTL_MARGIN, JobRequest
from shared.keys import (
    JOB_FUNCTION,
    cancel_key,
    claimed_jobs_key,
    claimers_key,
    reply_stream_key,
    rq_job_key,
    rq_worker_executions_key,
    rq_worker_key,
)
from shared.ratelimit import RateLimiter
from shared.replies import FINAL_KINDS, ReplyChannel
from shared.serializers import JobSerializer

log = logging.getLogger("aigw.workers")

REQUEUE_MIN_SECONDS = 2.0  # a job with less of its deadline left is answered worker_lost instead
REQUEUED = "aigw_requeued"  # in a requeued job's meta: when; a job is requeued at most once


def worker_name(model_name: str, pid: int, host: str | None = None) -> str:
    """The RQ worker name of a gateway worker process: ``<model>.<host>.<pid>``."""
    return f"{model_name}.{host or socket.gethostname()}.{pid}".replace(":", "-")


@dataclass
class Salvage:
    """What became of a dead worker's jobs (job ids)."""

    requeued: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # answered worker_lost and recorded failed
    closed: list[str] = field(default_factory=list)  # already over (answered, or run elsewhere): records only

    def __bool__(self) -> bool:
        return bool(self.requeued or self.lost or self.closed)


def salvage_worker(connection: Redis, name: str, queue_name: str, *, reply_ttl: float,
                   requeue: bool = True) -> Salvage:
    """Deal with every job the dead worker ``name`` (of ``queue_name``) had, then forget it.

    Its registration goes first, so the API stops counting it as live at once. Safe to
    call again (for a worker already salvaged it finds nothing) and, job by job, safe
    against another salvager of the same worker.
    """
    claim_key = claimed_jobs_key(name)
    with connection.pipeline() as pipe:
        pipe.srem(claimers_key(queue_name), name)
        pipe.lrange(claim_key, 0, -1)
        rq_records.forget_worker(pipe, name, queue_name)  # answers, last, its started jobs
        _, claimed, *_, running = pipe.execute()
    jobs: dict[str, str | None] = {job_id.decode(): None for job_id in claimed}
    jobs.update(rq_records.started_jobs(running))
    outcome = Salvage()
    for job_id, execution_id in jobs.items():
        _salvage_job(connection, job_id, execution_id, name=name, queue_name=queue_name,
                     reply_ttl=reply_ttl, requeue=requeue, outcome=outcome)
    with connection.pipeline() as pipe:
        rq_records.forget_started(pipe, name)
        pipe.delete(claim_key)
        pipe.execute()
    if outcome:
        log.warning("salvaged the jobs of a dead worker",
                    extra={"worker": name, "requeued": outcome.requeued, "lost": outcome.lost,
                           "closed": outcome.closed})
    return outcome


def salvage_orphans(connection: Redis, queue_name: str, *, reply_ttl: float) -> list[str]:
    """The backstop for a host that died with its supervisor: the claimed jobs of this
    queue's workers whose registration expired (no heartbeat for its time to live) are
    answered ``worker_lost``. Never requeued: nobody knows how long ago they died.
    Returns the names of the workers salvaged."""
    names = [member.decode() for member in connection.smembers(claimers_key(queue_name))]
    if not names:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(rq_worker_key(name))
        alive = pipe.execute()
    salvaged = []
    for name, live in zip(names, alive, strict=True):
        # Removing it from the set makes this salvager the only one.
        if not live and connection.srem(claimers_key(queue_name), name):
            salvage_worker(connection, name, queue_name, reply_ttl=reply_ttl, requeue=False)
            salvaged.append(name)
    return salvaged


def _salvage_job(connection: Redis, job_id: str, execution_id: str | None, *, name: str, queue_name: str,
                 reply_ttl: float, requeue: bool, outcome: Salvage) -> None:
    job_key = rq_job_key(job_id)
    claim_key = claimed_jobs_key(name)
    executions_key = rq_worker_executions_key(name)
    answered_lost = False
    with connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(job_key, claim_key, executions_key)
                if execution_id is not None:
                    still_listed = rq_records.still_started(pipe, name, job_id, execution_id)
                else:
                    still_listed = pipe.lpos(claim_key, job_id) is not None
                if not still_listed:  # another salvager of this worker dealt with it
                    pipe.reset()
                    return
                try:
                    job = Job.fetch(job_id, connection=connection, serializer=JobSerializer)
                except NoSuchJobError:  # expired or deleted: nothing to answer
                    pipe.multi()
                    _forget(pipe, job_id, execution_id, name, queue_name)
                    pipe.execute()
                    return
                if not _still_ours(job, execution_id, name):
                    pipe.multi()
                    _forget(pipe, job_id, execution_id, name, queue_name)
                    pipe.execute()
                    outcome.closed.append(job_id)
                    return
                verdict = _verdict(connection, job, execution_id, requeue)
                if verdict == "requeue":
                    pipe.multi()
                    _requeue(pipe, job, execution_id, name, claim_key)
                    pipe.execute()
                    outcome.requeued.append(job_id)
                    return
                if verdict == "lost" and not answered_lost:
                    # Before the records: the client hears at once, whatever happens next.
                    ReplyChannel(connection, job_id, ttl=reply_ttl).send_error(WorkerLost())
                    answered_lost = True
                    _settle_lost(connection, job, execution_id)
                if verdict == "other":
                    _abandon_plain_job(job)
                pipe.multi()
                _record_failure(pipe, job, execution_id, name, claim_key, verdict)
                pipe.execute()
                (outcome.closed if verdict == "answered" else outcome.lost).append(job_id)
                if verdict == "other":
                    Queue(job.origin, connection=connection, serializer=JobSerializer).enqueue_dependents(job)
                return
            except WatchError:  # another salvager (or RQ's clean-up) wrote the job: look again
                continue


def _still_ours(job: Job, execution_id: str | None, name: str) -> bool:
    """The job is still the dead worker's: running under its name, or claimed and not since
    started by anyone (a requeued job is no longer in its claim list)."""
    status = job.get_status(refresh=False)
    if execution_id is not None:
        return status == JobStatus.STARTED and job.worker_name == name
    return status in (JobStatus.QUEUED, JobStatus.STARTED) and job.worker_name in (None, "", name)


def _verdict(connection: Redis, job: Job, execution_id: str | None, requeue: bool) -> str:
    """requeue | lost (answer worker_lost) | answered (its final entry is out) | other (not a gateway job)."""
    if job.func_name != JOB_FUNCTION:
        return "other"
    with connection.pipeline(transaction=False) as pipe:
        pipe.exists(reply_stream_key(job.id))
        pipe.exists(cancel_key(job.id))
        pipe.xrevrange(reply_stream_key(job.id), count=1)
        written, gone, last = pipe.execute()
    if last and (last[0][1].get(b"kind") or b"").decode() in FINAL_KINDS:
        return "answered"  # it died recording an outcome its client already has
    request = _request_of(job)
    if (requeue and not written and not gone and request is not None and not job.meta.get(REQUEUED)
            and request.remaining() >= REQUEUE_MIN_SECONDS):
        return "requeue"
    return "lost"


def _request_of(job: Job) -> JobRequest | None:
    try:
        return JobRequest.from_dict(job.args[0])
    except Exception:  # unreadable data: answered worker_lost, never rerun
        return None


def _requeue(pipe, job: Job, execution_id: str | None, name: str, claim_key: str) -> None:
    request = _request_of(job)
    rq_records.requeue(pipe, job, queue_ttl=max(1, math.ceil(request.remaining())) + RQ_QUEUE_TTL_MARGIN,
                       meta={**job.meta, REQUEUED: time.time()}, execution_id=execution_id, worker_name=name,
                       claim_key=claim_key)


def _record_failure(pipe, job: Job, execution_id: str | None, name: str, claim_key: str, verdict: str) -> None:
    """What RQ records for a job abandoned by its worker: failed, with a failure result."""
    reason = ("its worker died recording an outcome its client already had" if verdict == "answered"
              else "its worker died while running it")
    rq_records.record_failure(pipe, job, f"Worker {name} died: {reason} ({AbandonedJobError.__name__})",
                              worker_name=name, execution_id=execution_id, claim_key=claim_key)


def _forget(pipe, job_id: str, execution_id: str | None, name: str, queue_name: str) -> None:
    pipe.lrem(claimed_jobs_key(name), 0, job_id)
    if execution_id is not None:
        rq_records.forget_start(pipe, job_id, execution_id, queue=queue_name, worker_name=name)


def _settle_lost(connection: Redis, job: Job, execution_id: str | None) -> None:
    """A job answered worker_lost settles its reservation here, once: a job never recorded
    as started never had its provider request on the wire, and gets it all back; one that
    had keeps its estimate (the provider may have worked on it; nobody knows how much)."""
    request = _request_of(job)
    if execution_id is None and request is not None and request.reservation:
        try:
            RateLimiter(connection).refund(request.reservation)
        except Exception:
            log.exception("could not refund a lost job's reservation", extra={"job_id": job.id})


def _abandon_plain_job(job: Job) -> None:
    """Not a gateway job (any RQ job the worker serves): its failure callback, as RQ's
    clean-up of an abandoned job runs it."""
    if job.failure_callback is None:
        return
    try:
        job.failure_callback(job, job.connection, AbandonedJobError, AbandonedJobError(), None)
    except Exception:
        log.exception("an abandoned job's failure callback failed", extra={"job_id": job.id})
