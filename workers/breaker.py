"""The circuit breaker a worker's calls feed: when a deployment's failure counts, who opens it, and the
one probe that closes it (issue 18). The states it writes, their layout in Redis and their readers
are ``shared.breaker``'s; this is the worker's side of them.

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

Unlike LiteLLM's router, whose cooldown ends on a timer and sends every worker's
traffic back at once (litellm/router_utils/cooldown_handlers.py: a cooled
deployment simply leaves the cooldown cache when its TTL ends), one probe
decides here, and the state is Redis's, not a per-process cache's.

Costs: a model in the short form without fallbacks never gets here. A worker reads a model's hash at
most once a second (``Breaker.states``) and at once after one of its own calls failed; it writes only
on a failure, on a probe's outcome and when a 403 count must be reset.
"""

from __future__ import annotations

import logging
import math
import time

from redis import Redis

from shared.breaker import (
    COOLING,
    FAILED,
    HEALTH_TTL,
    REFRESH,
    DeploymentState,
    field_int,
    field_text,
    read_states,
)
from shared.config_types import ModelConfig
from shared.keys import deployment_failures_key, deployment_health_key, deployment_probe_key, key_part

log = logging.getLogger("aigw.breaker")

# Failures no content can cause (Envoy's "locally originated"): the retry reasons workers.upstream gives them.
# A read timeout is not one: a call's whole answer comes before its first byte unless it streams, so a
# prompt that asks for a long answer can run any call into it.
LOCAL_ORIGIN = ("connect",)
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
        counts = {field_text(k): field_int(field_text(v)) for k, v in (counts or {}).items()}
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
