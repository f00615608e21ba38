"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

import logging

import falcon
import redis

from api.dispatch import Dispatcher
from shared.keys import queue_name

log = logging.getLogger("aigw.api")


class Health:
    """Liveness: the process answers. No dependencies, so a Redis outage never restarts it."""

    authenticate = False
    access_log = False

    def on_get(self, req, resp) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """Readiness: Redis answers. Per-model workers are shown, not required: one model
    without workers must not take every API instance out of its load balancer."""

    authenticate = False
    access_log = False

    def __init__(self, dispatcher: Dispatcher):
        self.dispatcher = dispatcher

    def on_get(self, req, resp) -> None:
        try:
            self.dispatcher.redis.ping()
        except redis.RedisError as error:
            # The detail (host, port) goes to the log, not to whoever probes /ready.
            log.warning("readiness: redis unreachable", extra={"error": str(error)})
            resp.status = falcon.HTTP_503
            resp.media = {"status": "unavailable", "redis": {"ok": False, "error": "unreachable"}}
            return
        models = {}
        for name in self.dispatcher.queues:
            models[name] = {
                "workers": self.dispatcher.liveness.count(queue_name(name), fresh=True),
                "queued": self.dispatcher.queue_depth(name),
            }
        resp.media = {"status": "ready", "redis": {"ok": True}, "models": models}
