"""The queues as an operator sees them: the one shape ``python -m workers.inspect --json`` prints
and ``GET /admin/queues`` answers (the facts themselves are read by ``shared.rq_inspection``).

Every configured model is listed; so is a queue workers once registered whose model is no longer
configured, while anything of it is left (jobs waiting or running, workers, failures), marked
``"configured": false``.
"""

from __future__ import annotations

import datetime

from redis import Redis

from shared.keys import queue_name
from shared.rq_inspection import FailedJob, QueueFacts, failed_jobs, known_queues, queue_facts
from shared.rq_records import is_suspended


def queue_report(redis: Redis, models: list[str], *, now: float | None = None) -> dict:
    """``{"models": {name: facts}, "suspended": bool}`` for ``models`` (the configured ones) and
    any other queue with something left in it."""
    configured = {queue_name(model): model for model in models}
    others = [queue for queue in known_queues(redis) if queue not in configured]
    report = {}
    for facts in queue_facts(redis, list(configured) + others, now=now):
        listed = facts.queue in configured
        if not listed and not (facts.queued or facts.in_progress or facts.workers or facts.failed):
            continue  # a removed model's queue with nothing left in it
        report[configured.get(facts.queue, facts.queue)] = facts_json(facts, configured=listed)
    return {"models": report, "suspended": is_suspended(redis)}


def facts_json(facts: QueueFacts, *, configured: bool) -> dict:
    age = facts.oldest_queued_age
    return {"configured": configured, "queued": facts.queued, "in_progress": facts.in_progress,
            "workers": facts.workers, "failed": facts.failed,
            "oldest_queued_age_seconds": None if age is None else round(age, 3)}


def failed_report(redis: Redis, model: str, *, limit: int = 100) -> list[dict]:
    """The model's failed jobs, latest first: id, when, error, request id; never the prompt."""
    return [failed_json(job) for job in failed_jobs(redis, queue_name(model), limit=limit)]


def failed_json(job: FailedJob) -> dict:
    return {"job_id": job.job_id, "failed_at": iso(job.failed_at), "request_id": job.request_id,
            "endpoint": job.endpoint, "error": job.error}


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")
