"""What the deployments' tests do to the sandbox providers, the model they configure, and how they
serve a request."""

from __future__ import annotations

import time

import requests

from shared.config import parse_config
from shared.jobs import CHAT_COMPLETIONS, JobRequest
from shared.ratelimit import RateLimiter
from workers import breaker as worker_breaker
from workers.runtime import Runtime


def outage(url: str, status: int | None, **extra) -> None:
    requests.post(f"{url}/_sandbox/outage", json={"status": status, **extra}, timeout=5).raise_for_status()


def calls(url: str) -> int:
    log = requests.get(f"{url}/_sandbox/log", params={"path": "/v1/chat/completions"}, timeout=5).json()
    return len(log["requests"])


def config(providers, *, weights=(1, 1), breaker_yaml=None, extra: dict | None = None, attempts: int = 3):
    deployments = [{"name": f"d{i}", "type": "generic", "base_url": f"{url}/v1", "model": "sandbox-model",
                    "weight": weight} for i, (url, weight) in enumerate(zip(providers, weights, strict=False))]
    model = {"name": "pool", "deployments": deployments, "timeout": "10s", "retries": {"attempts": attempts},
             "breaker": breaker_yaml or {"failures": 2, "window": "30s", "cool_down": "1s"}, **(extra or {})}
    return parse_config({"models": [model], "routes": []}, {})


def request(content: str = "hello", *, stream: bool = False, seconds: float = 10.0, user: str | None = None
            ) -> JobRequest:
    return JobRequest(job_id=f"job{time.monotonic_ns()}", request_id="req-1", model="pool", requested_model="pool",
                      endpoint=CHAT_COMPLETIONS, body={"model": "pool", "stream": stream,
                                                       "messages": [{"role": "user", "content": content}]},
                      deadline=time.time() + seconds, stream=stream, stream_seconds=30.0,
                      caller={"user_id": user, "username": None, "project_id": None} if user else {})


def serve(gateway, client, job: JobRequest, emit=None, *, seed: int | None = None):
    runtime = Runtime(gateway.settings if hasattr(gateway, "settings") else None, gateway)
    deployments = runtime.for_model("pool")
    if seed is not None:
        deployments.rng.seed(seed)
    return deployments.serve(job, lambda member, out: runtime._run(member, job, out), emit, client,
                             RateLimiter(client)), deployments


def cooled_by_two_callers(client, model, *, status: int) -> worker_breaker.Breaker:
    """Deployment d1 cooled down by ``status`` failures of two callers (breaker.min_callers);
    the worker's breaker that saw them."""
    seen = worker_breaker.Breaker(model)
    seen.states(client)
    for user in ("user_id:1", "user_id:2"):
        seen.failed(client, "d1", status=status, retry_after=None, probe=False, caller=user)
    return seen
