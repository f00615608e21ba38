"""Deployment health, shared by every worker on every host: the circuit breaker (issue 18).

A model's deployments' states live in one Redis hash per model
(``shared.keys.deployment_health_key``), so a worker reads all of them in one
command and every worker anywhere sees what one of them recorded:

- healthy: no field at all;
- cooling down (``<deployment>|cool`` = the epoch second it ends): after
  ``breaker.failures`` retryable failures (connection error, timeout,
  408/429/5xx/529) within ``breaker.window``, for ``breaker.cool_down``; or after
  a 429 with ``Retry-After``, for that long (at most ``breaker.max_cool_down``).
  Once it ends, one probe call decides: the worker that wins that cool-down's
  ``deployment_probe_key`` (SET NX, expiring with the model's timeout) sends the
  next call there; a success makes it healthy. Other workers keep away
  meanwhile, even those whose view is a second old.

No single caller opens a breaker, or holds it open, by what it sends. A provider
may answer 5xx to one prompt (vLLM does to some inputs), or break a stream on
it; such a failure could be the content's, so it counts toward opening only when
the window's such failures come from ``breaker.min_callers`` distinct callers
(``caller_of``: the user, else the project, else the GitLab instance; the window
is one hash per deployment, ``deployment_failures_key``, a field per caller). A
probe that fails so releases the probe (the next call, maybe another caller's,
probes) and cools the deployment again only once ``breaker.min_callers``
distinct callers' probes failed. Failures no content can cause count as before,
whoever's call met them: no connection (refused, reset), no answer before the
read timeout, a 429 with ``Retry-After``, a 401 or 403. Envoy's outlier detection
draws the same line, between errors the upstream returned for a request and
"locally originated" ones (timeout, reset, refused connection), and counts them
apart (envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier,
``split_external_local_origin_errors``); LiteLLM's router lets a failure's kind
decide whether it cools at all (``AllowedFailsPolicy``, BerriAI/litellm#3963),
and neither asks who sent the call, which a gateway shared by users must.
- failed (``<deployment>|failed`` = why): the provider answered 401, or 403 on
  ``breaker.forbidden`` consecutive calls (``<deployment>|forbidden`` counts
  them). It stays failed until a worker (re)loads the config, or
  ``python -m workers.inspect deployments --clear`` clears it. "Consecutive" as
  the workers see it: an answer resets the count when its worker's view, read
  at the call's pick (at most a second old), showed one; an answer elsewhere
  in between goes unseen, so with many workers the count is a little eager.

Unlike LiteLLM's router, whose cooldown ends on a timer and sends every worker's
traffic back at once (litellm/router_utils/cooldown_handlers.py: a cooled
deployment simply leaves the cooldown cache when its TTL ends), one probe
decides here, and the state is Redis's, not a per-process cache's.

Timestamps are epoch seconds of the writing host: hosts' clocks are assumed to
agree to well within a cool-down.

Costs: a model in the short form without fallbacks never gets here. A worker
reads a model's hash at most once a second (``Breaker.states``) and at once
after one of its own calls failed; it writes only on a failure, on a probe's
outcome and when a 403 count must be reset.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from shared.config_types import ModelConfig
from shared.keys import deployment_failures_key, deployment_health_key, deployment_probe_key, key_part

log = logging.getLogger("aigw.breaker")

HEALTHY, COOLING, FAILED = "healthy", "cooling_down", "failed"
STATES = (HEALTHY, COOLING, FAILED)
HEALTH_TTL = 86400  # a model's health hash outlives its last write this long (a removed model's goes)
REFRESH = 1.0  # seconds a worker (or an API process) trusts the states it read
# Failures no content can cause (Envoy's "locally originated"): the retry reasons workers.upstream gives them.
LOCAL_ORIGIN = ("connect", "read_timeout")
ANY_CALLER = "*"  # the window's field that counts those (a caller's field is never "*": see caller_of)


def caller_of(fields: dict | None) -> str:
    """Who a job's caller fields (``JobRequest.caller``) name, for the breaker's distinct callers: the
    GitLab user, else the project, else the GitLab instance (a GitLab Duo request with no known user);
    ids only, never a credential, each escaped. A request naming none is one caller, "unknown"."""
    fields = fields or {}
    for kind in ("user_id", "project_id", "gitlab_instance"):
        value = fields.get(kind)
        if value:
            return f"{kind}:{key_part(str(value))}"
    return "unknown"


def content_may_cause(status: int | None, reason: str) -> bool:
    """Whether a prompt could have caused the failure: any HTTP answer but a 401/403 (and a 429 with
    Retry-After, handled apart), and a failure after the connection (a stream that broke off or began
    with the provider's error, a body that is not JSON): the upstream's answer to this request."""
    if status is None:
        return reason not in LOCAL_ORIGIN
    return status not in (401, 403)


@dataclass(frozen=True)
class DeploymentState:
    state: str = HEALTHY
    until: float = 0.0  # cooling: when its probe may go
    reason: str = ""  # failed: why (http_401, http_403)
    forbidden: int = 0  # consecutive 403s

    def out(self, now: float) -> bool:
        """Failed, or cooling down with no probe due yet."""
        return self.state == FAILED or (self.state == COOLING and self.until > now)

    def describe(self, now: float) -> dict:
        shown: dict = {"state": self.state}
        if self.state == COOLING:
            shown["probe_in_seconds"] = max(0, math.ceil(self.until - now))
        if self.state == FAILED:
            shown["reason"] = self.reason
        return shown


def read_states(redis: Redis, model: ModelConfig) -> dict[str, DeploymentState]:
    """Every deployment of ``model`` (the short form's one too) and its state: one HGETALL."""
    fields = {_text(k): _text(v) for k, v in (redis.hgetall(deployment_health_key(model.name)) or {}).items()}
    states = {}
    for deployment in model.upstreams:
        name = deployment.name
        forbidden = _int(fields.get(f"{name}|forbidden"))
        if f"{name}|failed" in fields:
            states[name] = DeploymentState(FAILED, reason=fields[f"{name}|failed"], forbidden=forbidden)
        elif f"{name}|cool" in fields:
            states[name] = DeploymentState(COOLING, until=_float(fields[f"{name}|cool"]), forbidden=forbidden)
        else:
            states[name] = DeploymentState(forbidden=forbidden)
    return states


_unavailable_cache: dict[str, tuple[float, bool]] = {}


def unavailable(redis: Redis, model: ModelConfig, *, max_age: float = REFRESH) -> bool:
    """True when every deployment of ``model`` is failed or cooling down with no probe due: the API
    then goes straight to the model's fallbacks. No Redis command for a model without fallbacks;
    otherwise at most one a second per process (the answer is kept ``max_age`` seconds)."""
    if not model.fallbacks:
        return False
    now = time.time()
    cached = _unavailable_cache.get(model.name)
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    answer = all(state.out(now) for state in read_states(redis, model).values())
    _unavailable_cache[model.name] = (now, answer)
    return answer


def clear(redis: Redis, model: ModelConfig, deployment: str | None = None) -> list[str]:
    """Make ``deployment`` (every deployment when None) healthy: what a reload and
    ``python -m workers.inspect deployments --clear`` do. Answers the names that were not healthy."""
    states = read_states(redis, model)
    names = [d.name for d in model.upstreams if deployment in (None, d.name)]
    pipe = redis.pipeline(transaction=False)
    pipe.hdel(deployment_health_key(model.name), *(f"{n}|{f}" for n in names for f in ("cool", "failed", "forbidden")))
    pipe.delete(*(deployment_failures_key(model.name, name) for name in names))
    pipe.execute()
    return [n for n in names if states.get(n, DeploymentState()).state != HEALTHY]


def clear_failed(redis: Redis, models) -> dict[str, list[str]]:
    """What a configuration reload does: every deployment marked failed (a 401, repeated 403s) is tried
    again, since its key may have been fixed; cooling ones keep cooling. Answers the cleared, per model.
    Redis unreachable: logged, and they stay failed (``python -m workers.inspect deployments --clear``)."""
    cleared: dict[str, list[str]] = {}
    try:
        for model in models:
            if not model.uses_breaker:
                continue
            names = [n for n, s in read_states(redis, model).items() if s.state == FAILED or s.forbidden]
            if names:
                fields = [f"{n}|{f}" for n in names for f in ("failed", "forbidden")]
                redis.hdel(deployment_health_key(model.name), *fields)
                cleared[model.name] = names
                log.info("deployments failed before the reload are tried again",
                         extra={"model": model.name, "deployments": names})
    except RedisError as error:
        log.warning("could not clear the deployments marked failed: Redis unreachable", extra={"error": str(error)})
    return cleared


class Breaker:
    """One model's breaker in one worker process: the states it last read, and what its calls record."""

    def __init__(self, model: ModelConfig, *, refresh: float = REFRESH, clock=time.time):
        self.model = model
        self.config = model.breaker
        self.refresh = refresh
        self.clock = clock
        self._states: dict[str, DeploymentState] = {}
        self._read_at = -math.inf
        self._probing: dict[str, float] = {}  # deployment -> the cool-down end whose probe this worker took

    def states(self, redis: Redis) -> dict[str, DeploymentState]:
        """The deployments' states, read again when older than ``refresh`` or after a failure here: what
        another worker recorded is seen within ``refresh``."""
        now = self.clock()
        if now - self._read_at >= self.refresh:
            self._states = read_states(redis, self.model)
            self._read_at = now
        return self._states

    def stale(self) -> None:
        """Read the states again before the next pick."""
        self._read_at = -math.inf

    def try_probe(self, redis: Redis, deployment: str) -> bool:
        """Take the one probe of a deployment whose cool-down ended; False when another worker has it."""
        ttl_ms = max(1000, int(self.model.timeout * 1000))
        until = self._states.get(deployment, DeploymentState()).until
        self._probing[deployment] = until
        return bool(redis.set(deployment_probe_key(self.model.name, deployment, until), "1", nx=True, px=ttl_ms))

    def succeeded(self, redis: Redis, deployment: str, *, probe: bool) -> None:
        """A call answered. Costs nothing unless it was a probe or the deployment had 403s counted."""
        state = self._states.get(deployment, DeploymentState())
        if not probe and state.forbidden == 0:
            return
        key = deployment_health_key(self.model.name)
        pipe = redis.pipeline(transaction=False)
        pipe.hdel(key, f"{deployment}|forbidden")
        if probe:
            pipe.hdel(key, f"{deployment}|cool")
            pipe.delete(deployment_failures_key(self.model.name, deployment))
        pipe.execute()
        self._set(deployment, DeploymentState())
        if probe:
            log.info("deployment healthy again: its probe call answered",
                     extra={"model": self.model.name, "deployment": deployment})

    def failed(self, redis: Redis, deployment: str, *, status: int | None, retry_after: float | None,
               probe: bool, caller: str = "unknown", reason: str = "") -> str | None:
        """A call failed in a way another attempt may fix (``status`` None: no HTTP answer, ``reason``
        the retry's label, "connect", "read_timeout", "upstream_error", ...), or with 401/403, for
        ``caller`` (``caller_of``). Answers the state it moved the deployment to, if it moved."""
        if status == 401 or status == 403:
            return self._refused(redis, deployment, status)
        if status == 429 and retry_after is not None and retry_after > 0:
            return self._cool(redis, deployment, min(retry_after, self.config.max_cool_down),
                              f"the provider answered 429 with Retry-After {retry_after:g}s")
        content = content_may_cause(status, reason)
        if probe and not content:
            return self._cool(redis, deployment, self.config.cool_down, "its probe call failed")
        window = deployment_failures_key(self.model.name, deployment)
        pipe = redis.pipeline(transaction=False)
        pipe.hincrby(window, caller if content else ANY_CALLER, 1)
        pipe.pttl(window)
        pipe.hgetall(window)
        _, ttl, counts = pipe.execute()
        if ttl is not None and ttl < 0:  # this failure starts the window
            redis.pexpire(window, max(1, int(self.config.window * 1000)))
        self.stale()
        counts = {_text(k): _int(_text(v)) for k, v in (counts or {}).items()}
        anyone = counts.pop(ANY_CALLER, 0)
        callers = len(counts)
        enough_callers = callers >= self.config.min_callers
        if probe:  # a content failure: it cools again only once enough distinct callers' probes failed
            if enough_callers:
                return self._cool(redis, deployment, self.config.cool_down,
                                  f"its probe calls failed for {callers} callers")
            until = self._probing.get(deployment, self._states.get(deployment, DeploymentState()).until)
            redis.delete(deployment_probe_key(self.model.name, deployment, until))
            return None
        count = anyone + (sum(counts.values()) if enough_callers else 0)
        if count >= self.config.failures:
            return self._cool(redis, deployment, self.config.cool_down,
                              f"{count} failures within {self.config.window:g}s")
        return None

    def _refused(self, redis: Redis, deployment: str, status: int) -> str | None:
        key = deployment_health_key(self.model.name)
        if status == 403:
            pipe = redis.pipeline(transaction=False)
            pipe.hincrby(key, f"{deployment}|forbidden", 1)
            pipe.expire(key, HEALTH_TTL)
            count = pipe.execute()[0]
            if count < self.config.forbidden:
                self._set(deployment, DeploymentState(forbidden=count))
                return None
        pipe = redis.pipeline(transaction=False)
        pipe.hset(key, f"{deployment}|failed", f"http_{status}")
        pipe.expire(key, HEALTH_TTL)
        pipe.execute()
        self._set(deployment, DeploymentState(FAILED, reason=f"http_{status}"))
        log.error("deployment failed: the provider refused the gateway's credentials; it stays out until the "
                  "config is reloaded or `python -m workers.inspect deployments --clear` clears it",
                  extra={"model": self.model.name, "deployment": deployment, "status": status})
        return FAILED

    def _cool(self, redis: Redis, deployment: str, seconds: float, why: str) -> str:
        until = self.clock() + seconds
        key = deployment_health_key(self.model.name)
        pipe = redis.pipeline(transaction=False)
        pipe.hset(key, f"{deployment}|cool", repr(until))
        pipe.expire(key, HEALTH_TTL)
        pipe.delete(deployment_failures_key(self.model.name, deployment))  # the next window starts afresh
        pipe.execute()
        self._set(deployment, DeploymentState(COOLING, until=until))
        log.warning("deployment cooling down: %s", why,
                    extra={"model": self.model.name, "deployment": deployment, "seconds": round(seconds, 3)})
        return COOLING

    def _set(self, deployment: str, state: DeploymentState) -> None:
        self._states = {**self._states, deployment: state}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def _float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
