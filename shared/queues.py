"""Facts about a model's queue that live in Redis: how deep it is, who serves it.

Both the API (to refuse at once when nobody serves a model) and the metrics
(read at scrape time) ask these questions, so the answers are the same.
"""

from __future__ import annotations

from redis import Redis
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from shared.keys import queue_name


def live_workers(redis: Redis, model_name: str) -> int:
    """RQ workers serving the model's queue whose liveness key has not expired. A worker
    killed without unregistering (SIGKILL) stays in RQ's set until its key expires."""
    keys = redis.smembers(WORKERS_BY_QUEUE_KEY % queue_name(model_name))
    return redis.exists(*keys) if keys else 0


def queue_depth(redis: Redis, model_name: str) -> int:
    return redis.llen(f"rq:queue:{queue_name(model_name)}")
