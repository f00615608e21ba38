"""The ``/metrics`` endpoint, on its own port: the sum of every process's files in
the host's metrics directory, plus the facts read from Redis at scrape time.

Served by gunicorn's master on a web host, or by ``python -m workers`` with
``--metrics-port`` on a host without a web process.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from shared.connections import redis_client
from shared.rq_records import live_workers, queue_depth

log = logging.getLogger("aigw.metrics")


class RedisFacts:
    """Queue depth and live workers per model: facts of Redis, not of any one process."""

    def __init__(self, redis_url: str, model_names: list[str]):
        self.redis = redis_client(redis_url, max_connections=4)
        self.model_names = model_names

    def collect(self):
        depth = GaugeMetricFamily("aigw_queue_depth", "Jobs waiting in the model's queue (read from Redis).",
                                  labels=["model"])
        workers = GaugeMetricFamily("aigw_workers", "Live worker processes serving the model (read from Redis).",
                                    labels=["model"])
        try:
            for name in self.model_names:
                depth.add_metric([name], queue_depth(self.redis, name))
                workers.add_metric([name], live_workers(self.redis, name))
        except Exception as error:  # a scrape during a Redis outage still serves the rest
            log.warning("metrics: redis unavailable", extra={"error": str(error)})
            return
        yield depth
        yield workers


def start_metrics_server(port: int, redis_url: str, model_names: list[str], directory: Path, *,
                         addr: str = "0.0.0.0") -> bool:
    """Serve /metrics; a port already taken is logged, not fatal: the API still serves."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    registry.register(RedisFacts(redis_url, model_names))
    try:
        start_http_server(port, addr=addr, registry=registry)
    except OSError as error:
        log.error("metrics NOT served: the port is unavailable", extra={"port": port, "error": str(error)})
        return False
    log.info("metrics served", extra={"addr": addr, "port": port, "path": "/metrics", "directory": str(directory)})
    return True
