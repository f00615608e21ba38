"""Admission: whether a request's job may be queued now, and the client's error when not.

One entry point per request, ``Admission.admit``, decides, in this order:

1. the routes pick the model that serves the request (404 ``model_not_found``,
   403 ``no_route``: ``api.routing``);
2. a model without live workers is refused before any allowance is taken (503
   ``no_workers``);
3. one atomic step in Redis (``shared.ratelimit``, handed the job's records by
   ``shared.rq_records``): the model's queue limit (503 ``queue_full``), then
   every rate limit that applies, taken from all or refused with 429
   ``rate_limited`` naming the scope that refused. Only a job both admit is
   written, so no worker ever sees a refused one.

The answer, ``Admitted``, carries the queued job and the rate-limit headers of
the response; a refusal is raised as the client's error, with its headers.

A request that may fall back (``may_fall_back``, to a model with ``fallbacks`` or a
``context_window_fallback``) carries a ``Trail`` (``api.fallback``); when the breakers
already say every deployment of its model is out, it goes straight to a fallback.
Another model's job is queued by ``queue``, the same steps 2 and 3 for that model.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, replace

from redis import Redis

from api import fallback
from api.rate_headers import headers_for
from api.routing import Decision, Router
from shared import breaker, errors, metrics
from shared.config import GatewayConfig, ModelConfig, Route
from shared.jobs import JobRequest
from shared.ratelimit import OverLimit, RateLimiter, Reservation, WriteRefused, estimate_tokens, limits_for
from shared.rq_records import job_enqueue, live_workers

LIVENESS_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class Ask:
    """What a request asks of whichever model serves it: its job's fields but the model's own."""

    requested: str  # the model name the client asked for; answers carry it
    endpoint: str
    body: dict
    deadline: float  # epoch seconds: the request's one deadline, whichever model serves it
    stream: bool
    client_headers: dict
    rate_limited: bool = True


@dataclass(frozen=True)
class Admitted:
    model: ModelConfig  # the model that serves the request
    route: str | None  # the route that admitted it
    job: JobRequest  # queued
    rate_headers: dict[str, str]  # the limits' figures, in the endpoint's headers
    trail: fallback.Trail | None = None  # a request that may fall back: what it asks, the models tried


class WorkerLiveness:
    """Counts live workers on a model's queue, cached briefly: it is asked on every request."""

    def __init__(self, redis: Redis, cache_seconds: float = LIVENESS_CACHE_SECONDS):
        self.redis = redis
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def count(self, model_name: str, *, fresh: bool = False) -> int:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(model_name)
        # Only a positive count is trusted from the cache: "no workers" refuses requests,
        # so it is always checked afresh (a worker that just started counts at once).
        if cached and cached[1] > 0 and not fresh and now - cached[0] < self.cache_seconds:
            return cached[1]
        live = live_workers(self.redis, model_name)
        with self._lock:
            self._cache[model_name] = (now, live)
        return live


class Admission:
    def __init__(self, config: GatewayConfig, router: Router, limiter: RateLimiter, liveness: WorkerLiveness):
        self.config = config
        self.router = router
        self.limiter = limiter
        self.liveness = liveness

    def admit(self, req, *, endpoint: str, body: dict, rate_limited: bool = True,
              client_headers: dict | None = None, may_fall_back: bool = False,
              serve_with: Decision | None = None) -> Admitted:
        """Route the request, check its model's workers, and queue its job if the queue's
        limit and every rate limit admit it; else raise the client's error. A job that is not
        ``rate_limited`` (it costs no tokens, say reading a stored response) takes no allowance.
        ``client_headers``: what the job forwards to a provider of the client's format (api.forwarded_headers).
        ``may_fall_back``: the request may move to its model's fallbacks (``api.fallback``) while
        nothing has reached the client.
        ``serve_with``: the routes' decision to use instead of resolving the requested name (a Responses
        API continuation goes to the model that holds its conversation, ``api.resources.responses``)."""
        ctx = req.context
        requested = body["model"]
        decision = serve_with or self.router.resolve(ctx.identity, requested)
        model = decision.model
        ctx.log.update({"model": requested, "destination": model.name, "route": decision.route_name})
        ask = Ask(requested, endpoint, body, time.time() + model.timeout, bool(body.get("stream")),
                  client_headers or {}, rate_limited)
        trail = None
        if may_fall_back and (model.fallbacks or model.context_window_fallback):
            trail = fallback.Trail(model, ask, (model.name,))
            # Asked only of a model with fallbacks: any other costs no Redis command here.
            if model.fallbacks and breaker.unavailable(self.limiter.redis, model):
                ctx.log["breakers_open"] = True  # every deployment out: no job for the model if a fallback admits
                moved, trail = fallback.readmit(req, self, trail, model, errors.DeploymentsUnavailable.code)
                if moved is not None:
                    refusal = errors.DeploymentsUnavailable(
                        f"Every deployment of model '{model.name}' is unavailable right now.")
                    return replace(moved, trail=replace(trail, refusal=refusal))
        return self.queue(ctx, model, decision.route, ask, trail)

    def queue(self, ctx, model: ModelConfig, route: Route | None, ask: Ask,
              trail: fallback.Trail | None = None) -> Admitted:
        """Queue ``ask``'s job for ``model`` (admitted by ``route``): its workers, then its queue's
        limit and every rate limit in one atomic step; else raise the client's error."""
        if self.liveness.count(model.name) == 0:
            raise errors.NoWorkers(f"No worker is serving model '{model.name}' right now; try again later.",
                                   retry_after=5)
        if ask.rate_limited:
            limits = limits_for(model, route, ctx.identity.limit_key, ctx.identity.project_id)
            reservation = Reservation.of(limits, estimate_tokens(ask.body, model.max_output_tokens))
        else:
            reservation = Reservation.of([], 0)
        route_name = route.name if route else None
        job = JobRequest(job_id=uuid.uuid4().hex, request_id=ctx.request_id, model=model.name,
                         requested_model=ask.requested, endpoint=ask.endpoint, body=ask.body,
                         deadline=ask.deadline, caller=ctx.identity.job_fields(),
                         reservation=reservation.to_dict(), stream=ask.stream,
                         stream_seconds=model.max_stream_duration if ask.stream else 0.0, route=route_name,
                         client_headers=ask.client_headers)
        jobs = self.config.jobs
        enqueue = job_enqueue(job, max_depth=model.max_queue_depth, result_ttl=jobs.result_ttl,
                              failure_ttl=jobs.failure_ttl)
        try:
            figures = self.limiter.take(reservation, enqueue)
        except WriteRefused as full:  # the enqueue's refusal: the queue's depth
            raise errors.QueueFull(f"Model '{model.name}' has {full.answer} requests waiting, its limit; "
                                   "try again shortly.", retry_after=1) from None
        except OverLimit as refused:
            ctx.log["rate_limit_scope"] = refused.limit.scope
            metrics.RATE_LIMITED.labels(model.name, refused.limit.scope_kind).inc()
            raise _refusal(refused, headers_for(refused.figures, ctx.wire)) from None
        # The headers are made here, while the request waits, not on its answer's way.
        return Admitted(model, route_name, job, headers_for(figures, ctx.wire), trail)


def _refusal(refused: OverLimit, headers: dict[str, str]) -> errors.RateLimited:
    limit = refused.limit
    if refused.retry_after is None:
        return errors.RateLimited(
            f"This request alone needs more than {limit.label} allows ({limit.describe()}): "
            "ask for fewer max_tokens or send a shorter prompt.", should_retry=False, headers=headers)
    wait = max(1, math.ceil(refused.retry_after))
    return errors.RateLimited(f"Rate limit reached for {limit.label}: {limit.describe()}. "
                              f"Try again in {wait} s.", retry_after=wait, headers=headers)
