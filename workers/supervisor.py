"""A parent process that keeps N RQ worker processes per model running.

It is the first to know when one dies (the process's sentinel becomes
readable): it salvages the dead worker's jobs at once (``workers.salvage``:
requeued once if their clients have received nothing and their deadlines leave
time, else answered ``502 worker_lost``), removes its registration, and starts
a replacement after a backoff. Restarts are scheduled, never slept through, so
a second death is salvaged as promptly as the first.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from prometheus_client import multiprocess
from redis import Redis
from redis.exceptions import RedisError

from shared import metrics
from shared.config import GatewayConfig
from shared.connections import redis_client
from shared.keys import queue_name
from shared.logs import setup_logging
from shared.metrics_directory import host_directory
from shared.settings import Settings
from workers.runtime import Runtime, set_runtime
from workers.salvage import salvage_worker, worker_name
from workers.worker_classes import ThreadedWorker

log = logging.getLogger("aigw.workers")

METRICS = "__metrics__"  # the plan's name for the metrics child
RESTART_BACKOFF_MAX = 30.0
HEALTHY_RUN = 60.0  # a child that ran this long resets its restart backoff
PR_SET_PDEATHSIG = 1
SALVAGE_RETRY = 1.0  # seconds between tries to salvage a dead worker's jobs while Redis is away
SALVAGE_GIVE_UP = 300.0  # then the heartbeat expiry's backstop takes over


def run_worker_process(settings: Settings, config: GatewayConfig, model_name: str, concurrency: int) -> None:
    """Body of one worker process: serve one model's queue until told to stop."""
    # Forget the supervisor's handlers; RQ installs its own once it starts working.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent()
    setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir,
                  process_name=f"worker-{model_name}")
    set_runtime(Runtime(settings, config, pool_size=concurrency))
    # Every job thread, the monitor and the main loop may hold a connection at once.
    connection = redis_client(settings.redis_url, max_connections=concurrency + 8)
    name = worker_name(model_name, os.getpid(), socket.gethostname())
    worker = ThreadedWorker([queue_name(model_name)], connection=connection, name=name, concurrency=concurrency,
                            reply_ttl=config.jobs.result_ttl)
    worker.work(logging_level=None)


def run_metrics_process(settings: Settings, config: GatewayConfig, port: int) -> None:
    """A host without a web process: this small child serves the workers' /metrics. (Not the
    supervisor itself: workers forked later would inherit its listening socket.)"""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent()
    setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir, process_name="worker-metrics")
    from shared.plumbing.metrics_server import start_metrics_server

    start_metrics_server(port, settings.redis_url, [m.name for m in config.models], host_directory(),
                         addr=settings.host)
    signal.pause()


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process if the supervisor dies, so no worker is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: orphans are possible, but harmless to correctness


class Supervisor:
    def __init__(self, settings: Settings, config: GatewayConfig, plan: dict[str, tuple[int, int]],
                 metrics_port: int | None = None):
        """``plan``: model name -> (processes, jobs at once per process)."""
        self.metrics_port = metrics_port
        self.settings = settings
        self.config = config
        self.plan = plan
        self.context = multiprocessing.get_context("fork")
        self.children: dict[int, tuple[str, BaseProcess, float]] = {}  # sentinel -> (model, process, started)
        self.backoff: dict[str, float] = {}
        self.restarts: list[tuple[float, str]] = []  # (monotonic time due, model)
        self.dead: dict[str, tuple[str, float]] = {}  # worker name -> (model, monotonic time of death): to salvage
        self.signals_received = 0
        self.stop_deadline: float | None = None
        self._redis: Redis | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        metrics.forget_dead_processes(host_directory())
        if self.metrics_port:
            self._start(METRICS)
        for model_name, (count, _) in self.plan.items():
            for _ in range(count):
                self._start(model_name)
        log.info("worker processes started",
                 extra={"plan": {name: f"{count} x {jobs}" for name, (count, jobs) in self.plan.items()}})
        while self.children or self.restarts:
            ready = wait(list(self.children), timeout=self._next_wake())
            for sentinel in ready:
                self._reap(sentinel)
            self._salvage_dead()
            self._restart_due()
            if self.stop_deadline is not None and time.time() > self.stop_deadline:
                for _, process, _ in self.children.values():
                    log.error("worker did not stop in time; killing it", extra={"pid": process.pid})
                    process.kill()
                self.stop_deadline = float("inf")
        self._finish_salvage()
        log.info("all worker processes stopped")
        return 0

    def _next_wake(self) -> float:
        due = min((when for when, _ in self.restarts), default=None)
        wake = 1.0 if due is None else min(1.0, max(0.0, due - time.monotonic()))
        return wake if self.children else max(wake, 0.01)

    def _start(self, model_name: str) -> None:
        if model_name == METRICS:
            target, args = run_metrics_process, (self.settings, self.config, self.metrics_port)
        else:
            target, args = run_worker_process, (self.settings, self.config, model_name, self.plan[model_name][1])
        process = self.context.Process(target=target, args=args, name=f"worker-{model_name}", daemon=False)
        process.start()
        self.children[process.sentinel] = (model_name, process, time.time())

    def _reap(self, sentinel: int) -> None:
        model_name, process, started = self.children.pop(sentinel)
        process.join()
        multiprocess.mark_process_dead(process.pid)
        if model_name != METRICS:
            # Even one that exited cleanly: it may have failed to write its own death.
            self.dead[worker_name(model_name, process.pid)] = (model_name, time.monotonic())
            self._salvage_dead()
        if self.signals_received:
            return
        ran = time.time() - started
        delay = 1.0 if ran > HEALTHY_RUN else min(RESTART_BACKOFF_MAX, self.backoff.get(model_name, 0.5) * 2)
        self.backoff[model_name] = delay
        log.error("worker process exited; restarting it",
                  extra={"model": model_name, "pid": process.pid, "exitcode": process.exitcode,
                         "restart_in_s": delay})
        self.restarts.append((time.monotonic() + delay, model_name))

    def _restart_due(self) -> None:
        if self.signals_received:
            self.restarts.clear()
            return
        now = time.monotonic()
        for entry in [entry for entry in self.restarts if entry[0] <= now]:
            self.restarts.remove(entry)
            self._start(entry[1])

    def _salvage_dead(self) -> None:
        """Salvage the jobs of every dead worker not yet salvaged; while Redis is away, the
        next pass tries again (after ``SALVAGE_GIVE_UP``, heartbeat expiry takes over)."""
        for name, (model_name, died) in list(self.dead.items()):
            try:
                salvage_worker(self._connection(), name, queue_name(model_name),
                               reply_ttl=self.config.jobs.result_ttl)
            except RedisError as error:
                if time.monotonic() - died > SALVAGE_GIVE_UP:
                    log.error("gave up salvaging a dead worker's jobs; heartbeat expiry will fail them",
                              extra={"worker": name, "error": str(error)})
                    del self.dead[name]
                continue
            except Exception:
                log.exception("could not salvage a dead worker's jobs", extra={"worker": name})
            del self.dead[name]

    def _finish_salvage(self) -> None:
        """On the way out: a few more tries for the dead workers still unsalvaged."""
        deadline = time.monotonic() + 5 * SALVAGE_RETRY
        while self.dead and time.monotonic() < deadline:
            time.sleep(SALVAGE_RETRY)
            self._salvage_dead()

    def _connection(self) -> Redis:
        if self._redis is None:
            self._redis = redis_client(self.settings.redis_url, max_connections=2)
        return self._redis

    def _on_signal(self, signum, frame) -> None:
        self.signals_received += 1
        if self.stop_deadline is None:
            # Running jobs end by their deadline (a stream by its length); give them that, plus slack.
            self.stop_deadline = time.time() + self.config.max_stream_duration + 15
        log.info("stopping worker processes", extra={"signal": signal.Signals(signum).name,
                                                     "cold": self.signals_received > 1})
        for _, process, _ in self.children.values():
            if process.pid:
                try:
                    os.kill(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
