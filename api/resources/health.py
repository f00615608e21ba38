"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging
import time

import falcon
import redis

from api.admission import WorkerLiveness
from api.gitlab import GitLabClient
from api.identity import Authenticator
from shared.breaker import read_states
from shared.config import ModelConfig
from shared.errors import GatewayError
from shared.rq_records import queue_depth

log = logging.getLogger("aigw.api")
GITLAB_PROBE_EVERY = 5.0


class Health:
    """Liveness: the process answers. No dependencies, so a Redis outage never restarts it."""

    authenticate = False
    access_log = False

    def on_get(self, req, resp) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """Readiness: Redis answers. Per-model workers are shown, not required: one model
    without workers must not take every API instance out of its load balancer.

    Anyone (a probe has no credential) hears the status and Redis's. The details, every
    configured model with its live workers, queued jobs and deployments' states, and whether
    GitLab answers, are a GitLab administrator's (``Identity.is_admin``, as ``/admin/queues``):
    they name models routes may hide and tell which provider key was refused. Any other
    credential, or one GitLab refuses, changes neither the status code nor the short body."""

    authenticate = False
    access_log = False

    def __init__(self, redis_client: redis.Redis, liveness: WorkerLiveness, model_names: list[str],
                 gitlab: GitLabClient, models: tuple[ModelConfig, ...] = (),
                 authenticator: Authenticator | None = None):
        self.redis = redis_client
        self.authenticator = authenticator
        self.liveness = liveness
        self.model_names = model_names
        # Models whose deployments' health is kept (shared.breaker): /ready shows each one's state.
        self.with_deployments = {m.name: m for m in models if m.uses_breaker}
        self.gitlab = gitlab
        self._gitlab_seen: tuple[float, bool] = (0.0, False)

    def on_get(self, req, resp) -> None:
        try:
            self.redis.ping()
        except redis.RedisError as error:
            # The detail (host, port) goes to the log, not to whoever probes /ready.
            log.warning("readiness: redis unreachable", extra={"error": str(error)})
            resp.status = falcon.HTTP_503
            resp.media = {"status": "unavailable", "redis": {"ok": False, "error": "unreachable"}}
            return
        shown: dict = {"status": "ready", "redis": {"ok": True}}
        if self._administrator(req):
            shown["gitlab"] = {"reachable": self._gitlab_reachable()}
            shown["models"] = self._models()
        resp.media = shown

    def _administrator(self, req) -> bool:
        """Does the request carry a GitLab administrator's token? No credential: no GitLab call."""
        if self.authenticator is None:
            return False
        try:
            return self.authenticator.identify(req).is_admin
        except (GatewayError, redis.RedisError):
            return False

    def _models(self) -> dict:
        models = {}
        for name in self.model_names:
            models[name] = {
                "workers": self.liveness.count(name, fresh=True),
                "queued": queue_depth(self.redis, name),
            }
            if name in self.with_deployments:
                now = time.time()
                states = read_states(self.redis, self.with_deployments[name])
                models[name]["deployments"] = {d: state.describe(now) for d, state in states.items()}
        return models

    def _gitlab_reachable(self) -> bool:
        """Shown, not required: callers with cached identities keep working through an outage.
        Probed at most every few seconds, however often /ready is polled."""
        checked, reachable = self._gitlab_seen
        if time.monotonic() - checked > GITLAB_PROBE_EVERY:
            reachable = self.gitlab.reachable()
            self._gitlab_seen = (time.monotonic(), reachable)
        return reachable
