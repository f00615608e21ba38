"""What operators read of RQ's records (``python -m workers.inspect``, ``GET /admin/queues``;
``shared.queue_report`` shapes it): ``queue_facts`` (per queue: waiting, in progress, live workers,
failed, the oldest waiting job's age), ``failed_jobs`` (the failed registry, each job's time, error and
request id, never its payload) and ``purge_failed`` (the failed registry's jobs and their records
removed). The layout read is the one ``shared.rq_records`` writes (RQ 3.0's); its docstring tells
each record's life. A job is in progress from its dequeue: in its worker's claim list until its
start is recorded, in the started registry after.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import time
import zlib
from dataclasses import dataclass

from redis import Redis

from shared.keys import (
    RQ_QUEUES_KEY,
    claimed_jobs_key,
    claimers_key,
    rq_failed_registry_key,
    rq_job_key,
    rq_queue_key,
    rq_results_key,
    rq_started_registry_key,
    rq_workers_by_queue_key,
)

OLDEST_LOOKAHEAD = 10  # waiting ids looked at for the oldest job (an expired one is skipped)
ERROR_CHARS = 300  # of a failed job's error: its last line, which names the exception and its message
# A gateway job's description (``shared.rq_records.job_enqueue``): what a listing may show of it. Any other job's
# description is RQ's, the call with its arguments, and is never shown.
_GATEWAY_DESCRIPTION = re.compile(r"^(?P<endpoint>[\w.]+) model=\S+ request_id=(?P<request_id>\S+)$")


@dataclass(frozen=True)
class QueueFacts:
    """One queue as an operator sees it."""

    queue: str
    queued: int  # waiting to be taken
    in_progress: int  # taken by a worker and not ended (claimed, or recorded as started)
    workers: int  # live workers serving it
    failed: int  # in the failed registry, not expired
    oldest_queued_age: float | None  # seconds the oldest waiting job has waited; None: none waits


@dataclass(frozen=True)
class FailedJob:
    """A failed job as a listing shows it: never its payload (the prompt)."""

    job_id: str
    failed_at: float | None  # epoch seconds
    error: str  # the last line of its error
    request_id: str | None  # a gateway job's request (None for any other job)
    endpoint: str | None


def known_queues(redis: Redis) -> list[str]:
    """The queues workers have listed in ``rq:queues`` (a removed model's stays there)."""
    prefix = rq_queue_key("")
    names = (member.decode() if isinstance(member, bytes) else member for member in redis.smembers(RQ_QUEUES_KEY))
    return sorted(name[len(prefix):] for name in names if name.startswith(prefix))


def queue_facts(redis: Redis, queues: list[str], *, now: float | None = None) -> list[QueueFacts]:
    """Each queue's facts, in two pipelined round trips whatever the number of queues."""
    now = time.time() if now is None else now
    with redis.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(rq_queue_key(queue))
            pipe.smembers(rq_workers_by_queue_key(queue))
            pipe.zcount(rq_started_registry_key(queue), now, "+inf")  # lower scores: abandoned, not running
            pipe.zcard(rq_failed_registry_key(queue))
            pipe.zcount(rq_failed_registry_key(queue), 0, now)  # expired, not yet cleaned up
            pipe.smembers(claimers_key(queue))
            pipe.lrange(rq_queue_key(queue), 0, OLDEST_LOOKAHEAD - 1)
        first = pipe.execute()
    rows = [first[index * 7:(index + 1) * 7] for index in range(len(queues))]
    with redis.pipeline(transaction=False) as pipe:
        for _, workers, _, _, _, claimers, head in rows:
            if workers:
                pipe.exists(*workers)
            for name in claimers:
                pipe.llen(claimed_jobs_key(name.decode()))
            for job_id in head:
                pipe.hget(rq_job_key(job_id.decode()), "enqueued_at")
        second = iter(pipe.execute())
    facts = []
    for queue, (queued, workers, started, failed, expired, claimers, head) in zip(queues, rows, strict=True):
        live = next(second) if workers else 0
        claimed = sum(next(second) for _ in claimers)
        enqueued = [_epoch(next(second)) for _ in head]
        oldest = min((when for when in enqueued if when is not None), default=None)  # a job put in front is newer
        facts.append(QueueFacts(queue=queue, queued=queued, in_progress=started + claimed, workers=live,
                                failed=max(0, failed - expired),
                                oldest_queued_age=None if oldest is None or not queued else max(0.0, now - oldest)))
    return facts


def failed_jobs(redis: Redis, queue: str, *, limit: int = 100, now: float | None = None) -> list[FailedJob]:
    """The queue's failed jobs not yet expired, latest failure first, at most ``limit``."""
    now = time.time() if now is None else now
    key = rq_failed_registry_key(queue)
    # Scored by when the entry expires: the latest failures (of one failure_ttl) score highest;
    # a negative score never expires (an RQ job with failure_ttl -1).
    ids = redis.zrevrangebyscore(key, "+inf", now, start=0, num=limit)
    ids += redis.zrevrangebyscore(key, "(0", "-inf", start=0, num=max(0, limit - len(ids)))
    with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(rq_job_key(job_id.decode()), "ended_at", "description")
            pipe.xrevrange(rq_results_key(job_id.decode()), count=1)
        answers = pipe.execute()
    jobs = []
    for index, job_id in enumerate(ids):
        (ended_at, description), results = answers[2 * index], answers[2 * index + 1]
        found = _GATEWAY_DESCRIPTION.match(description.decode(errors="replace")) if description else None
        exc = results[0][1].get(b"exc_string") if results else None
        jobs.append(FailedJob(job_id=job_id.decode(), failed_at=_epoch(ended_at), error=_last_line(exc),
                              request_id=found["request_id"] if found else None,
                              endpoint=found["endpoint"] if found else None))
    return sorted(jobs, key=lambda job: job.failed_at or 0.0, reverse=True)


def purge_failed(redis: Redis, queue: str, *, batch: int = 500) -> int:
    """Remove every job of the queue's failed registry: its hash, its failure result and its entry.
    A job failing meanwhile stays (it was not read). Returns how many were removed."""
    key = rq_failed_registry_key(queue)
    removed = 0
    while True:
        ids = [job_id.decode() for job_id in redis.zrange(key, 0, batch - 1)]
        if not ids:
            return removed
        with redis.pipeline() as pipe:
            for job_id in ids:
                pipe.delete(rq_job_key(job_id), rq_results_key(job_id))
            pipe.zrem(key, *ids)
            pipe.execute()
        removed += len(ids)


def _epoch(raw: bytes | None) -> float | None:
    """A time RQ wrote (``utc``), as epoch seconds; None if absent or unreadable."""
    if not raw:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    for layout in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(text, layout).replace(tzinfo=datetime.UTC).timestamp()
        except ValueError:
            continue
    return None


def _last_line(exc_string: bytes | None) -> str:
    """The last line of a failure as RQ stores it in a result (zlib, then base64)."""
    if not exc_string:
        return ""
    try:
        text = zlib.decompress(base64.b64decode(exc_string)).decode(errors="replace")
    except (binascii.Error, zlib.error, ValueError):
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:ERROR_CHARS] if lines else ""
