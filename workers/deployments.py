"""A model's deployments in one worker process, and the pick of one per call (issue 18).

Each deployment (``models[].deployments``; the short form's one ``default``) has
its own provider adapter and pooled HTTP client. A call goes to one picked by
weight among those that are

- healthy by the shared breaker (``workers.breaker``): not failed, not cooling
  down; a deployment whose cool-down ended gets the call as its one probe if this
  worker wins the probe token;
- within their own ``rate_limit`` (the provider's quota for that key, taken here
  from the same sliding logs as the gateway's limits, ``shared.ratelimit``);
- able to express the request: a deployment whose adapter refuses it before
  sending anything (a field its type cannot carry) is skipped for this call, and
  the request is refused only when every deployment refuses it.

One retry policy (``workers.retry``: the model's ``retries.attempts``, backoff,
``Retry-After``, the request's deadline) spans the deployments: a retryable
failure moves the next attempt to a deployment not tried yet, at once, and only
a return to one already tried waits. Any other failure of the deployment before
anything reached the client (a stream that broke off, went silent or began with
the provider's error event before its first chunk; a TLS failure; a redirect)
moves the call to a deployment not tried yet too, but is never retried on the
same one. Nothing is retried once the first chunk of
a stream has gone to the client: peers that did (LiteLLM's router, whose
mid-stream fallback replayed a half-sent answer or lost the error, BerriAI/litellm
#6957, #38610) show why; such a failure ends the stream as before.

When every deployment is out or every one tried failed, the answer is
``DeploymentsUnavailable`` (503; ``UpstreamRateLimited`` when each refusal was a
429 or a quota), which the API may move to the model's ``fallbacks``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from shared import metrics
from shared.breaker import COOLING, HEALTHY
from shared.config import ModelConfig
from shared.config_types import DeploymentConfig
from shared.errors import (
    DeadlineExceeded,
    DeploymentsUnavailable,
    GatewayError,
    InvalidRequest,
    RequestCancelled,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
)
from shared.keys import key_part
from shared.ratelimit import DAY, MINUTE, REQUESTS, TOKENS, Limit, OverLimit, RateLimiter, estimate_tokens
from shared.replies import SERVED_BY
from shared.usage import usage_total
from workers.breaker import Breaker, caller_of
from workers.cancel import cancelled_error, current_scope
from workers.endpoints import Emit, Outcome
from workers.providers import Provider, provider_for
from workers.retry import Retryable, upstream_retrying
from workers.upstream import UpstreamClient

log = logging.getLogger("aigw.deployments")

# run(deployment, emit): one call of the endpoint on one deployment (workers.runtime).
Run = Callable[["Deployment", Emit | None], Outcome]


@dataclass
class Deployment:
    config: DeploymentConfig
    provider: Provider
    client: UpstreamClient
    served_by: str  # "<model>/<deployment>"
    limits: list[Limit]

    @property
    def name(self) -> str:
        return self.config.name


class Deployments:
    """One model's deployments in this process. A model in the short form without fallbacks has no
    breaker, and its one deployment's client retries by itself, as before."""

    def __init__(self, model: ModelConfig, *, pool_size: int = 4, rng: random.Random | None = None):
        self.model = model
        self.breaker = Breaker(model) if model.uses_breaker else None
        self.rng = rng or random.Random()
        self.members = [self._member(d, pool_size) for d in model.upstreams]
        self.by_name = {m.name: m for m in self.members}

    def _member(self, config: DeploymentConfig, pool_size: int) -> Deployment:
        model = self.model
        scope = f"deployment:{key_part(model.name)}:{key_part(config.name)}"
        label = f"deployment '{config.name}' of model '{model.name}'"
        wanted = [(REQUESTS, MINUTE, config.rate_limit.requests_per_minute),
                  (TOKENS, MINUTE, config.rate_limit.tokens_per_minute),
                  (REQUESTS, DAY, config.rate_limit.requests_per_day)]
        return Deployment(config, provider_for(model, config) if model.deployments else provider_for(model),
                          UpstreamClient(model.for_deployment(config), pool_size=pool_size,
                                         single_attempt=self.breaker is not None),
                          f"{model.name}/{config.name}",
                          [Limit(scope, label, kind, period, value) for kind, period, value in wanted if value])

    @property
    def simple(self) -> Deployment | None:
        """The one deployment, when the plain path serves the model (no breaker, no quota of its own)."""
        return self.members[0] if self.breaker is None else None

    # -- serving ---------------------------------------------------------------------------------------

    def serve(self, request, run: Run, emit: Emit | None, redis: Redis, limiter: RateLimiter,
              pin: str | None = None) -> Outcome:
        """``run`` on a picked deployment, moving to another on a retryable failure (see the module).
        ``pin``: the deployment that holds the conversation a request continues; only it may serve."""
        call = _Call(self, request, run, emit, redis, limiter, pin)
        return call.serve()


class _Call:
    """One request's way through the deployments."""

    def __init__(self, deployments: Deployments, request, run: Run, emit: Emit | None, redis: Redis,
                 limiter: RateLimiter, pin: str | None):
        self.deployments = deployments
        self.model = deployments.model
        self.breaker = deployments.breaker
        self.request = request
        self.run = run
        self.redis = redis
        self.limiter = limiter
        self.pin = pin
        self.scope = current_scope()
        self.caller = caller_of(request.caller)  # whose failures these are, for the breaker
        self.tried: set[str] = set()
        self.unable: dict[str, GatewayError] = {}  # deployments that cannot express the request
        self.reasons: list[str] = []
        self.failures: list[Retryable] = []
        self.attempts = 0
        self.emitted = False
        self.client_emit = emit
        self.current: Deployment | None = None
        self.reservations: dict = {}  # per deployment picked: what its quota admitted
        self.tokens = estimate_tokens(request.body, self.model.max_output_tokens) \
            if any(m.limits for m in deployments.members) else 0

    def serve(self) -> Outcome:
        sleep = self.scope.sleep if self.scope is not None else time.sleep
        retrying = upstream_retrying(attempts=self.model.retry_attempts, deadline=self.request.deadline, sleep=sleep,
                                     switch=self._untried_left)
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt()
        except Retryable as last:
            if self.scope is not None and self.scope.cancelled:
                raise cancelled_error(self.scope) from None
            raise self._exhausted(last) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _attempt(self) -> Outcome:
        while True:  # a deployment that cannot express the request costs no attempt
            member, probe = self._pick()
            self.attempts += 1
            self.current = member
            metrics.DEPLOYMENT_CALLS.labels(self.model.name, member.name).inc()
            sent_before = self.scope.upstream_attempts if self.scope is not None else 0
            try:
                outcome = self.run(member, self._emit if self.client_emit is not None else None)
            except Retryable as failed:
                self._failed(member, failed.reason, failed.status, failed.retry_after, probe)
                self.reasons.append(failed.reason)
                self.failures.append(failed)
                if self.emitted:  # never after the first chunk (cannot happen: a stream raises no Retryable)
                    raise UpstreamError(failed.message or failed.reason) from None
                raise
            except UpstreamAuthError as refused:
                status = getattr(refused, "upstream_status", 401)
                self._failed(member, f"http_{status}", status, None, probe)
                if self.emitted:
                    raise
                # Another deployment may hold a good key: that is an attempt like any other.
                self.reasons.append(f"status_{status}")
                self.failures.append(Retryable(f"status_{status}", status=status, message=refused.message))
                raise self.failures[-1] from None
            except InvalidRequest as cannot:
                sent = self.scope is not None and self.scope.upstream_attempts > sent_before
                if sent or self.emitted:
                    raise
                self.unable[member.name] = cannot
                self.attempts -= 1
                continue
            except (RequestCancelled, DeadlineExceeded):
                raise
            except UpstreamError as broke:
                if self.emitted:  # the stream broke off: the deployment's trouble, counted, not retried
                    self._failed(member, "stream", None, None, probe)
                    raise
                # The deployment failed before anything reached the client: a stream that broke off or went
                # silent before its first chunk, or whose first event was the provider's error (Anthropic's
                # overloaded_error comes so, after a 200), a TLS failure, a redirect, a body that is not JSON.
                # Another deployment may serve it, as after a 5xx; this one is not asked again.
                self._failed(member, "upstream_error", None, None, probe)
                if not self._untried_left():
                    raise
                self.reasons.append("upstream_error")
                self.failures.append(Retryable("upstream_error", message=broke.message))
                raise self.failures[-1] from None
            if self.breaker is not None:
                self.breaker.succeeded(self.redis, member.name, probe=probe)
            self._settle_quota(member, outcome.usage)
            outcome.served_by = member.served_by
            outcome.attempts += self.attempts - 1
            outcome.retry_reasons = self.reasons + list(outcome.retry_reasons)
            return outcome

    def _emit(self, data: bytes, meta: dict | None = None) -> None:
        """The client's emit; the first chunk also says who served it (for the header)."""
        if not self.emitted:
            self.emitted = True
            self.client_emit(data, {**(meta or {}), SERVED_BY: self.current.served_by})
        else:
            self.client_emit(data)

    def _untried_left(self) -> bool:
        states = self.breaker.states(self.redis) if self.breaker is not None else {}
        for member in self._allowed():
            if member.name in self.tried or member.name in self.unable:
                continue
            state = states.get(member.name)
            if state is None or state.state == HEALTHY:
                return True
        return False

    def _allowed(self) -> list[Deployment]:
        if self.pin is not None:
            member = self.deployments.by_name.get(self.pin)
            return [member] if member is not None else []
        return self.deployments.members

    def _pick(self) -> tuple[Deployment, bool]:
        now = time.time()
        states = self.breaker.states(self.redis) if self.breaker is not None else {}
        healthy, due = [], []
        for member in self._allowed():
            if member.name in self.unable:
                continue
            state = states.get(member.name)
            if state is None or state.state == HEALTHY:
                healthy.append(member)
            elif state.state == COOLING and state.until <= now:
                due.append(member)
        for member in due:  # its cool-down ended: this call is its one probe, if no other worker took it
            if self.breaker.try_probe(self.redis, member.name) and self._has_quota(member, None):
                self.tried.add(member.name)
                return member, True
        fresh = [m for m in healthy if m.name not in self.tried] or healthy
        quota_waits: list[float | None] = []
        while fresh:
            member = self.deployments.rng.choices(fresh, weights=[m.config.weight for m in fresh])[0]
            if self._has_quota(member, quota_waits):
                self.tried.add(member.name)
                return member, False
            fresh.remove(member)
        raise self._none_left(states, now, quota_waits)

    def _has_quota(self, member: Deployment, waits: list | None) -> bool:
        if not member.limits:
            return True
        try:
            self.reservations[member.name] = self.limiter.admit(member.limits, self.tokens)
        except OverLimit as over:
            if waits is not None:
                waits.append(over.retry_after)
            return False
        return True

    def _settle_quota(self, member: Deployment, usage: dict | None) -> None:
        """A deployment's tokens per minute count what the provider reported, once it did (a failed call
        keeps the estimate, as the gateway's own limits do)."""
        reservation = self.reservations.get(member.name)
        if reservation is None:
            return
        total = usage_total(usage) if usage else None
        try:
            if total is not None and any(lim.kind == TOKENS for lim in member.limits):
                self.limiter.reconcile(reservation, total)
            else:
                self.limiter.keep(reservation)  # a day's limit drops what it kept for a refund
        except RedisError as error:
            log.warning("could not settle a deployment's token quota; its estimate stays counted",
                        extra={"model": self.model.name, "deployment": member.name, "error": str(error)})

    def _none_left(self, states: dict, now: float, quota_waits: list) -> GatewayError:
        allowed = self._allowed()
        if allowed and all(m.name in self.unable for m in allowed):
            return next(iter(self.unable.values()))
        name = self.model.name
        if quota_waits:
            waits = [w for w in quota_waits if w is not None]
            return UpstreamRateLimited(f"Every deployment of model '{name}' has used its quota.",
                                       retry_after=min(waits) if waits else None)
        cooling = [s.until - now for s in states.values() if s.state == COOLING and s.until > now]
        which = f"deployment '{self.pin}'" if self.pin else "deployment"
        detail = f"; last error: {self._last_detail()}" if self.failures else ""
        return DeploymentsUnavailable(f"No {which} of model '{name}' is available: each one is failed or cooling "
                                      f"down{detail}.", retry_after=min(cooling) if cooling else None)

    def _failed(self, member: Deployment, reason: str, status: int | None, retry_after: float | None,
                probe: bool) -> None:
        metrics.DEPLOYMENT_FAILURES.labels(self.model.name, member.name, reason).inc()
        if self.scope is not None and self.scope.cancelled:
            return  # the client left: not the deployment's fault
        if self.breaker is not None:
            self.breaker.failed(self.redis, member.name, status=status, retry_after=retry_after, probe=probe,
                                caller=self.caller, reason=reason)

    def _last_detail(self) -> str:
        last = self.failures[-1]
        if last.status is not None:
            return f"HTTP {last.status}" + (f": {last.message}" if last.message else "")
        if last.reason == "connect":
            return f"could not connect: {last.message}"
        if last.reason == "upstream_error":
            return last.message
        return "no answer before the read timeout"

    def _exhausted(self, last: Retryable) -> GatewayError:
        """Every attempt failed: a 429 throughout stays a 429; otherwise the model's deployments are
        unavailable for this request (the API may fall back)."""
        client = (self.current or self.deployments.members[0]).client
        error = client.exhausted_error(last, self.attempts, self.request.deadline)
        if isinstance(error, DeadlineExceeded | UpstreamRateLimited):
            if isinstance(error, UpstreamRateLimited) and not all(f.status == 429 for f in self.failures):
                return DeploymentsUnavailable(error.message, retry_after=error.retry_after)
            return error
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        return DeploymentsUnavailable(f"Every deployment of model '{self.model.name}' tried failed "
                                      f"({tries}); last error: {self._last_detail()}")
