"""Which models ``python -m workers`` serves, and how many processes of each.

Kept apart from ``workers.supervisor``, which imports prometheus-client: ``python -m workers``
makes its plan before it chooses the metrics' storage.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import GatewayConfig


@dataclass(frozen=True)
class Selection:
    """Which models ``python -m workers`` serves, and how many processes of each: what its
    command line and environment chose, applied to a config at start and again on each reload."""

    named: tuple[str, ...] = ()  # the models named (argv or WORKER_MODELS); () = every configured model
    processes: int | None = None  # --processes / WORKER_PROCESSES
    concurrency: int | None = None  # --concurrency / WORKER_CONCURRENCY

    def plan(self, config: GatewayConfig) -> dict[str, tuple[int, int]]:
        """Model name -> (processes, jobs at once per process). A model named explicitly gets at
        least one process even with ``workers: 0`` (which means "not started by default", e.g.
        served from another host)."""
        plan = {}
        for model in config.models:
            if self.named and model.name not in self.named:
                continue
            count = self.processes if self.processes is not None else (
                max(1, model.workers) if self.named else model.workers)
            plan[model.name] = (count, self.concurrency or model.concurrency)
        return plan
