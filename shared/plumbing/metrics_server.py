"""The ``/metrics`` endpoint, on its own port: the sum of every process's files in
the host's metrics directory, plus the facts read from Redis at scrape time.

Served by gunicorn's master on a web host, or by ``python -m workers`` with
``--metrics-port`` on a host without a web process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from shared.breaker import STATES, read_states
from shared.config import ModelConfig
from shared.connections import redis_client
from shared.rq_records import live_workers, queue_depth

log = logging.getLogger("aigw.metrics")


class RedisFacts:
    """Queue depth and live workers per model, and the state of each deployment whose health is kept
    (``shared.breaker``): facts of Redis, not of any one process."""

    def __init__(self, redis_url: str, model_names: list[str],
                 models: Callable[[], Iterable[ModelConfig]] | None = None):
        self.redis = redis_client(redis_url, max_connections=4)
        self.model_names = model_names
        self.models = models  # the config's models as they are now (a reload changes them)

    def collect(self):
        depth = GaugeMetricFamily("aigw_queue_depth", "Jobs waiting in the model's queue (read from Redis).",
                                  labels=["model"])
        workers = GaugeMetricFamily("aigw_workers", "Live worker processes serving the model (read from Redis).",
                                    labels=["model"])
        try:
            for name in self.model_names:
                depth.add_metric([name], queue_depth(self.redis, name))
                workers.add_metric([name], live_workers(self.redis, name))
            states = self._deployment_states()
        except Exception as error:  # a scrape during a Redis outage still serves the rest
            log.warning("metrics: redis unavailable", extra={"error": str(error)})
            return
        yield depth
        yield workers
        if states is not None:
            yield states

    def _deployment_states(self) -> GaugeMetricFamily | None:
        """``aigw_deployment_state``: 1 for each deployment's current state (healthy, cooling_down,
        failed), 0 for the others; a deployment is its configured name, never its URL."""
        models = [m for m in (self.models() if self.models is not None else ()) if m.uses_breaker]
        if not models:
            return None
        family = GaugeMetricFamily("aigw_deployment_state", "A deployment's state: 1 for the current one "
                                   "(read from Redis).", labels=["model", "deployment", "state"])
        for model in models:
            for deployment, state in read_states(self.redis, model).items():
                for name in STATES:
                    family.add_metric([model.name, deployment, name], 1.0 if name == state.state else 0.0)
        return family


def start_metrics_server(port: int, redis_url: str, model_names: list[str], directory: Path, *,
                         addr: str = "0.0.0.0", models: Callable[[], Iterable[ModelConfig]] | None = None) -> bool:
    """Serve /metrics; a port already taken is logged, not fatal: the API still serves. ``models``: the
    configured models as they are at each scrape, for their deployments' states."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    registry.register(RedisFacts(redis_url, model_names, models))
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as error:
        log.error("metrics NOT served: the port is unavailable", extra={"port": port, "error": str(error)})
        return False
    log.info("metrics served", extra={"addr": addr, "port": port, "path": "/metrics", "directory": str(directory)})
    return True
