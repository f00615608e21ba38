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
- failed (``<deployment>|failed`` = why): the provider answered 401, or 403 on
  ``breaker.forbidden`` consecutive calls (``<deployment>|forbidden`` counts
  them). It stays failed until a worker (re)loads the config, or
  ``python -m workers.inspect deployments --clear`` clears it. "Consecutive" as
  the workers see it: an answer resets the count when its worker's view, read
  at the call's pick (at most a second old), showed one; an answer elsewhere
  in between goes unseen, so with many workers the count is a little eager.

Timestamps are epoch seconds of the writing host: hosts' clocks are assumed to
agree to well within a cool-down.

Who writes these states, and when a failure counts, is ``workers.breaker``'s (the worker's side);
this module holds the layout, its readers (the API's fallbacks, ``/ready``, the metrics,
``python -m workers.inspect deployments``) and the clearing a reload does.

Costs: a model in the short form without fallbacks never gets here; an API process reads a model's
hash at most once a second (``unavailable``), and only for a model with fallbacks.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

from shared.config_types import ModelConfig
from shared.keys import deployment_failures_key, deployment_health_key

log = logging.getLogger("aigw.breaker")

HEALTHY, COOLING, FAILED = "healthy", "cooling_down", "failed"
STATES = (HEALTHY, COOLING, FAILED)
HEALTH_TTL = 86400  # a model's health hash outlives its last write this long (a removed model's goes)
REFRESH = 1.0  # seconds a worker (or an API process) trusts the states it read


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
    fields = {field_text(k): field_text(v) for k, v in (redis.hgetall(deployment_health_key(model.name)) or {}).items()}
    states = {}
    for deployment in model.upstreams:
        name = deployment.name
        forbidden = field_int(fields.get(f"{name}|forbidden"))
        if f"{name}|failed" in fields:
            states[name] = DeploymentState(FAILED, reason=fields[f"{name}|failed"], forbidden=forbidden)
        elif f"{name}|cool" in fields:
            states[name] = DeploymentState(COOLING, until=field_float(fields[f"{name}|cool"]), forbidden=forbidden)
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


def field_text(value) -> str:
    """A field or value of a health hash as text (redis-py answers bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def field_int(value: str | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def field_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0
