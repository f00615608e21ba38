"""Prometheus metrics, shared by every process on a host (prometheus-client's
multiprocess mode): each process writes its own files in one directory, and the
web process's master (or a standalone worker supervisor) serves their sum.

prometheus-client picks its storage (memory or that directory) when it is first
imported, so each process's entry point chooses the directory before that
(``shared.metrics_directory``); a process that did not (a unit test) keeps its
metrics in memory. Facts that belong to Redis rather than to a process (queue
depth, live workers) are read from Redis at scrape time, so every scrape target
reports the same number: dashboards take ``max``.
Labels are bounded (configured model and route names, status codes); never a
token, a prompt, a user or a request id.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from prometheus_client import Counter, Histogram, values

from shared.metrics_directory import DIR_ENV

log = logging.getLogger("aigw.metrics")

QUICK = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
LLM = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)


def forget_dead_processes(directory: Path) -> None:
    """At start, drop what processes of an earlier run left behind. Files of live processes
    (the other process type on this host) are kept: their counts must not vanish."""
    from prometheus_client import multiprocess

    for path in directory.glob("*.db"):
        try:
            pid = int(path.stem.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            continue
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, str(directory))
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if os.environ.get(DIR_ENV) and values.ValueClass is values.MutexValue:
    # The directory was chosen after prometheus-client was imported: this process would
    # count in memory, and nothing it counts would reach /metrics.
    raise RuntimeError(f"prometheus_client was imported before {DIR_ENV} was set; call "
                       "shared.metrics_directory.use_host_directory() first in the entry point")


REQUESTS = Counter("aigw_requests_total", "Requests answered by the API.", ["endpoint", "model", "route", "status"])
REQUEST_SECONDS = Histogram("aigw_request_duration_seconds", "Request duration in the API (streams: to their end).",
                            ["endpoint", "model"], buckets=LLM)
QUEUE_WAIT = Histogram("aigw_queue_wait_seconds", "From enqueue to the job's start in a worker.", ["model"],
                       buckets=QUICK)
UPSTREAM_REQUESTS = Counter("aigw_upstream_requests_total", "Calls to providers, by outcome.", ["model", "status"])
UPSTREAM_SECONDS = Histogram("aigw_upstream_duration_seconds", "Provider call time, retries included.", ["model"],
                             buckets=LLM)
UPSTREAM_RETRIES = Counter("aigw_upstream_retries_total", "Provider calls retried, by reason.", ["model", "reason"])
TIME_TO_FIRST_TOKEN = Histogram("aigw_time_to_first_token_seconds", "From enqueue to a stream's first chunk.",
                                ["model"], buckets=QUICK)
TOKENS = Counter("aigw_tokens_total", "Tokens the providers reported.", ["model", "kind", "route"])
RATE_LIMITED = Counter("aigw_rate_limited_total", "Requests refused by the gateway's rate limits.",
                       ["model", "scope"])
AUTH_FAILURES = Counter("aigw_auth_failures_total", "Requests refused on identity or access.", ["reason"])
GITLAB_REQUESTS = Counter("aigw_gitlab_requests_total", "Calls to the GitLab API, by status.", ["status"])
JOBS_DROPPED = Counter("aigw_jobs_dropped_total", "Jobs dropped without an answer.", ["model", "reason"])
FALLBACKS = Counter("aigw_fallbacks_total", "Requests moved to a fallback model (api.fallback), by the worker's "
                    "error code.", ["model", "fallback", "reason"])
DEPLOYMENT_CALLS = Counter("aigw_deployment_calls_total", "Provider calls per deployment of a model (its configured "
                           "name, never a URL).", ["model", "deployment"])
DEPLOYMENT_FAILURES = Counter("aigw_deployment_failures_total", "Failed provider calls per deployment, by reason.",
                              ["model", "deployment", "reason"])
