"""The jobs a removed model leaves behind.

A model removed from the configuration file (SIGHUP) is retired by the supervisor: its
workers go on serving its queue until the queue is empty, so every request admitted to it
gets its answer, then stop as in a rolling restart (running jobs finish). A web process
that has not reloaded yet can still admit a job in the moment between the queue's last
look and its workers' exit; once the last of them has gone, such a job would wait for its
deadline (a 504 at the end of the model's ``timeout``). ``answer_left_behind`` answers it at
once instead: 503 ``service_unavailable`` naming the removal, its rate-limit reservation
given back (no provider saw it), its records removed. It leaves alone a queue still served
by live workers (another host's: they will serve it) and any job that is not the gateway's.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from shared import rq_records
from shared.errors import ServiceUnavailable
from shared.jobs import JobRequest
from shared.keys import JOB_FUNCTION
from shared.ratelimit import RateLimiter
from shared.replies import ReplyChannel
from shared.serializers import JobSerializer

log = logging.getLogger("aigw.workers")


def removed_model_error(model: str) -> ServiceUnavailable:
    return ServiceUnavailable(f"The model '{model}' was removed from the gateway's configuration before this "
                              "request could run; it was not sent to any provider.")


def answer_left_behind(connection: Redis, queue: str, *, model: str, reply_ttl: float) -> list[str]:
    """Answer every gateway job still waiting on a removed model's queue that no live worker
    serves; returns their ids."""
    if rq_records.live_workers(connection, queue):
        return []
    answered = []
    for job_id in rq_records.waiting_jobs(connection, queue):
        try:
            job = Job.fetch(job_id, connection=connection, serializer=JobSerializer)
        except NoSuchJobError:  # expired in the queue: its deadline passed, its client had its 504
            rq_records.take_waiting(connection, queue, job_id)
            continue
        if job.func_name != JOB_FUNCTION or not rq_records.take_waiting(connection, queue, job_id):
            continue  # not the gateway's; or taken by someone else meanwhile
        ReplyChannel(connection, job_id, ttl=reply_ttl).send_error(removed_model_error(model))
        _refund(connection, job)
        with connection.pipeline() as pipe:
            rq_records.record_success(pipe, job_id, queue=queue, worker_name="", execution_id=None, claim_key=None)
            pipe.execute()
        answered.append(job_id)
    if answered:
        log.warning("answered the jobs left on a removed model's queue (503)",
                    extra={"model": model, "job_ids": answered})
    return answered


def _refund(connection: Redis, job: Job) -> None:
    try:
        request = JobRequest.from_dict(job.args[0])
        if request.reservation:
            RateLimiter(connection).refund(request.reservation)
    except Exception:  # the answer is out; a reservation left taken expires with its window
        log.exception("could not refund a removed model's job's reservation", extra={"job_id": job.id})
