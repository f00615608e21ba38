"""A parent process that keeps N RQ worker processes per model running.

It is the first to know when one dies (the process's sentinel becomes
readable): it salvages the dead worker's jobs at once (``workers.salvage``:
requeued once if their clients have received nothing and their deadlines leave
time, else answered ``502 worker_lost``), removes its registration, and starts
a replacement after a backoff. Restarts are scheduled, never slept through, so
a second death is salvaged as promptly as the first.

SIGHUP reloads the configuration file (the environment is read at start only).
An invalid file is refused: the problems are logged and everything runs on as
before. A valid one is applied model by model, without a request lost:

- a model added (or, with no model list, any model now planned) gets its processes;
- a model whose settings changed (anything of its own but ``workers``, or the
  concurrency, or ``jobs`` / ``logging``) is restarted warmly: the new processes
  start first, the old ones are told to stop (SIGTERM: they finish their running
  jobs) once the new ones have registered, so the model never lacks a live worker;
- a model whose ``workers`` count changed gains processes, or loses some warmly;
- a model removed from the file is retired: its processes go on serving its queue
  until it is empty (at most the model's ``timeout``, the longest a job of it can
  still be waiting), then stop warmly; whatever a web process not yet reloaded
  admitted meanwhile is answered 503 once they have gone (``workers.retire``). A
  model still configured but no longer planned here (``workers: 0``, or not named)
  is stopped warmly at once: its queued jobs stay for the workers that serve it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

from prometheus_client import multiprocess
from redis import Redis
from redis.exceptions import RedisError

from shared import metrics, rq_records
from shared.breaker import clear_failed
from shared.config import ConfigError, GatewayConfig, load_config
from shared.connections import redis_client
from shared.keys import queue_name
from shared.metrics_directory import host_directory
from shared.settings import Settings
from workers.child_processes import run_metrics_process, run_worker_process
from workers.retire import answer_left_behind
from workers.salvage import salvage_worker, worker_name
from workers.selection import Selection

log = logging.getLogger("aigw.workers")

METRICS = "__metrics__"  # the plan's name for the metrics child
RESTART_BACKOFF_MAX = 30.0
HEALTHY_RUN = 60.0  # a child that ran this long resets its restart backoff
SALVAGE_RETRY = 1.0  # seconds between tries to salvage a dead worker's jobs while Redis is away
SALVAGE_GIVE_UP = 300.0  # then the heartbeat expiry's backstop takes over
HANDOVER_MAX = 30.0  # a restarted model's old processes stop by then even if the new ones never registered
RETIRING_TICK = 0.25  # seconds between looks while processes wait to be retired
# A web process trusts a positive count of live workers for a second (api.admission's cache): once a
# removed model's last worker has gone, its queue is looked at for this long for jobs admitted meanwhile.
LEFT_BEHIND_WINDOW = 5.0


@dataclass
class Child:
    model: str  # or METRICS
    process: BaseProcess
    started: float  # time.time()
    retire_when: Callable[[], bool] | None = None  # retiring: told to stop once this holds...
    retire_by: float = math.inf  # ...or at this monotonic time at the latest
    stopping: bool = False  # told to stop (SIGTERM): not restarted when it exits

    @property
    def serving(self) -> bool:
        """Part of the plan: neither retiring nor stopping."""
        return self.retire_when is None and not self.stopping


class Supervisor:
    def __init__(self, settings: Settings, config: GatewayConfig, selection: Selection,
                 metrics_port: int | None = None):
        self.metrics_port = metrics_port
        self.settings = settings
        self.config = config
        self.selection = selection
        self.plan = selection.plan(config)
        self.stop_grace = config.max_stream_duration  # the longest stream any process may still be running
        self.context = multiprocessing.get_context("fork")
        self.children: dict[int, Child] = {}  # by sentinel
        self.backoff: dict[str, float] = {}
        self.restarts: list[tuple[float, str]] = []  # (monotonic time due, model)
        self.dead: dict[str, tuple[str, float]] = {}  # worker name -> (model, monotonic time of death): to salvage
        self.removed: dict[str, float] = {}  # removed models -> since (monotonic): their queue answered once idle
        self.gone: dict[str, float] = {}  # removed models whose last process has gone -> since when (monotonic)
        self.signals_received = 0
        self.reload_requested = False
        self.stop_deadline: float | None = None
        self._redis: Redis | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_hup)
        metrics.forget_dead_processes(host_directory())
        # A start reads the config anew, as a reload does: a deployment a 401 or 403s marked failed is tried
        # again, since a restart is how a replaced key usually arrives (a new Secret, a new environment).
        clear_failed(self._connection(), self.config.models)
        if self.metrics_port:
            self._start(METRICS)
        for model_name, (count, _) in self.plan.items():
            for _ in range(count):
                self._start(model_name)
        log.info("worker processes started",
                 extra={"plan": {name: f"{count} x {jobs}" for name, (count, jobs) in self.plan.items()}})
        # Until told to stop: with nothing planned (every model removed) it waits for the next reload.
        while self.children or self.restarts or not self.signals_received:
            ready = wait(list(self.children), timeout=self._next_wake())
            for sentinel in ready:
                self._reap(sentinel)
            self._salvage_dead()
            if self.reload_requested:
                self.reload_requested = False
                if not self.signals_received:
                    self.reload()
            self._retire_due()
            self._answer_removed()
            self._restart_due()
            if self.stop_deadline is not None and time.time() > self.stop_deadline:
                for child in self.children.values():
                    log.error("worker did not stop in time; killing it", extra={"pid": child.process.pid})
                    child.process.kill()
                self.stop_deadline = float("inf")
        self._finish_salvage()
        log.info("all worker processes stopped")
        return 0

    def _next_wake(self) -> float:
        due = min((when for when, _ in self.restarts), default=None)
        wake = 1.0 if due is None else min(1.0, max(0.0, due - time.monotonic()))
        if self.removed or any(child.retire_when is not None for child in self.children.values()):
            wake = min(wake, RETIRING_TICK)
        return wake if self.children else max(wake, 0.01)

    def _start(self, model_name: str) -> Child:
        if model_name == METRICS:
            target, args = run_metrics_process, (self.settings, self.config, self.metrics_port)
        else:
            target, args = run_worker_process, (self.settings, self.config, model_name, self.plan[model_name][1])
        process = self.context.Process(target=target, args=args, name=f"worker-{model_name}", daemon=False)
        process.start()
        child = Child(model_name, process, time.time())
        self.children[process.sentinel] = child
        return child

    def _reap(self, sentinel: int) -> None:
        child = self.children.pop(sentinel)
        model_name, process = child.model, child.process
        process.join()
        multiprocess.mark_process_dead(process.pid)
        if model_name != METRICS:
            # Even one that exited cleanly: it may have failed to write its own death.
            self.dead[worker_name(model_name, process.pid)] = (model_name, time.monotonic())
            self._salvage_dead()
        if self.signals_received:
            return
        if not child.serving:
            log.info("worker process stopped", extra={"model": model_name, "pid": process.pid,
                                                      "exitcode": process.exitcode, "retired": True})
            if model_name == METRICS and child.stopping and self.metrics_port:
                self._start(METRICS)  # replaced: the model list changed
            return
        ran = time.time() - child.started
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
            if entry[1] == METRICS or entry[1] in self.plan:
                self._start(entry[1])

    # -- reload (SIGHUP) ------------------------------------------------------------
    def reload(self) -> None:
        """Apply the configuration file as it is now (see the module's docstring)."""
        path = self.settings.config_file_path
        try:
            config = load_config(path)
        except ConfigError as error:
            log.error("configuration reload refused: the workers keep the previous configuration",
                      extra={"problems": error.problems, "config_file": path})
            return
        for warning in config.warnings:
            log.warning(warning)
        missing = [name for name in self.selection.named if config.model(name) is None]
        if missing:
            log.warning("models named on the command line are no longer configured: their processes stop",
                        extra={"models": missing})
        clear_failed(self._connection(), config.models)  # a fixed key is tried again (shared.breaker)
        old_config, old_plan = self.config, self.plan
        self.config, self.plan = config, self.selection.plan(config)
        self.stop_grace = max(self.stop_grace, config.max_stream_duration)
        changes: dict[str, list[str]] = {"added": [], "removed": [], "restarted": [], "resized": []}
        for model in old_plan:
            if model not in self.plan:
                self._retire_model(model, old_config, drain=config.model(model) is None)
                changes["removed"].append(model)
        for model, (count, jobs) in self.plan.items():
            self.removed.pop(model, None)
            self.gone.pop(model, None)
            if model not in old_plan:
                self._start_more(model, count)
                changes["added"].append(model)
            elif old_plan[model][1] != jobs or _runs_differently(old_config, config, model):
                self._replace(model, count)
                changes["restarted"].append(model)
            elif count != old_plan[model][0]:
                self._resize(model, count)
                changes["resized"].append(model)
        if self.metrics_port and [m.name for m in old_config.models] != [m.name for m in config.models]:
            for child in self._children_of(METRICS):
                self._stop(child)  # started again as soon as it has gone, with the new list
        log.info("configuration reloaded", extra={
            "config_file": path, **changes,
            "plan": {name: f"{count} x {jobs}" for name, (count, jobs) in self.plan.items()}})

    def _children_of(self, model: str, *, serving: bool = True) -> list[Child]:
        return [child for child in self.children.values()
                if child.model == model and (child.serving or not serving)]

    def _start_more(self, model: str, count: int) -> None:
        for _ in range(count):
            self._start(model)

    def _replace(self, model: str, count: int) -> None:
        """New processes with the new settings; the old stop once the new have registered."""
        old = self._children_of(model)
        self._drop_restarts(model)
        self._start_more(model, count)
        ready = (lambda: self._all_registered(model)) if count else (lambda: True)
        for child in old:
            child.retire_when, child.retire_by = ready, time.monotonic() + HANDOVER_MAX

    def _resize(self, model: str, count: int) -> None:
        pending = sum(1 for _, name in self.restarts if name == model)
        have = len(self._children_of(model)) + pending
        if count > have:
            self._start_more(model, count - have)
            return
        excess = have - count
        while excess and pending:  # fewer restarts first: nothing to stop there
            self.restarts.remove(next(entry for entry in self.restarts if entry[1] == model))
            pending, excess = pending - 1, excess - 1
        for child in sorted(self._children_of(model), key=lambda each: each.started, reverse=True)[:excess]:
            self._stop(child)

    def _retire_model(self, model: str, old_config: GatewayConfig, *, drain: bool) -> None:
        """Stop a model's processes warmly: at once, or (removed from the file) once its queue is empty."""
        self._drop_restarts(model)
        children = self._children_of(model)
        if not drain:
            for child in children:
                self._stop(child)
            return
        old = old_config.model(model)
        queue = queue_name(model)
        by = time.monotonic() + (old.timeout if old is not None else 0.0)

        def drained() -> bool:
            return self._queue_empty(queue)

        for child in children:
            child.retire_when, child.retire_by = drained, by
        self.removed[model] = time.monotonic()
        log.info("model removed: its workers serve its queue until it is empty, then stop",
                 extra={"model": model, "processes": len(children), "at_most_s": old.timeout if old else 0})

    def _retire_due(self) -> None:
        if self.signals_received:
            return
        now = time.monotonic()
        looked: dict[int, bool] = {}
        for child in list(self.children.values()):
            if child.retire_when is None or child.stopping:
                continue
            key = id(child.retire_when)
            if key not in looked:
                looked[key] = now >= child.retire_by or child.retire_when()
            if looked[key]:
                self._stop(child)

    def _stop(self, child: Child) -> None:
        """Tell one process to stop warmly (SIGTERM: no new job; running ones finish)."""
        child.retire_when, child.stopping = None, True
        _terminate(child.process)

    def _drop_restarts(self, model: str) -> None:
        self.restarts = [entry for entry in self.restarts if entry[1] != model]

    def _answer_removed(self) -> None:
        """A removed model whose last process has gone: answer what was left on its queue, and
        for ``LEFT_BEHIND_WINDOW`` after, what a web process trusting its cached count admits."""
        now = time.monotonic()
        for model, since in list(self.removed.items()):
            if self._children_of(model, serving=False) or any(m == model for m, _ in self.dead.values()):
                continue
            gone = self.gone.setdefault(model, now)
            try:
                answer_left_behind(self._connection(), queue_name(model), model=model,
                                   reply_ttl=self.config.jobs.result_ttl)
            except RedisError as error:
                if now - since < SALVAGE_GIVE_UP:
                    continue  # Redis away: the next pass tries again
                log.error("gave up answering a removed model's queued jobs; their deadlines will",
                          extra={"model": model, "error": str(error)})
            except Exception:
                log.exception("could not answer a removed model's queued jobs", extra={"model": model})
            else:
                if now - gone < LEFT_BEHIND_WINDOW:
                    continue
            del self.removed[model]
            del self.gone[model]

    def _queue_empty(self, queue: str) -> bool:
        try:
            return rq_records.queue_depth(self._connection(), queue) == 0
        except RedisError:
            return False  # Redis away: keep serving; the time bound still holds

    def _all_registered(self, model: str) -> bool:
        names = [worker_name(model, child.process.pid) for child in self._children_of(model)]
        try:
            return rq_records.registered_workers(self._connection(), names) == len(names)
        except RedisError:
            return False

    # -- dead workers -------------------------------------------------------------------
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

    # -- signals --------------------------------------------------------------------------
    def _on_hup(self, signum, frame) -> None:
        self.reload_requested = True  # the main loop reloads within a second

    def _on_signal(self, signum, frame) -> None:
        self.signals_received += 1
        if self.stop_deadline is None:
            # Running jobs end by their deadline (a stream by its length); give them that, plus slack.
            self.stop_deadline = time.time() + self.stop_grace + 15
        log.info("stopping worker processes", extra={"signal": signal.Signals(signum).name,
                                                     "cold": self.signals_received > 1})
        for child in self.children.values():
            if child.stopping and self.signals_received == 1:
                continue  # already stopping warmly: a second SIGTERM would be the cold one
            child.retire_when, child.stopping = None, True
            _terminate(child.process)


def _runs_differently(old: GatewayConfig, new: GatewayConfig, model: str) -> bool:
    """Whether a model's processes would run otherwise under ``new``: anything of the model's own
    but its process count, or the settings every job reads (``jobs``, ``logging``)."""
    before, after = old.model(model), new.model(model)
    if before is None or after is None:
        return True
    return (dataclasses.replace(before, workers=0) != dataclasses.replace(after, workers=0)
            or old.jobs != new.jobs or old.logging != new.logging)


def _terminate(process: BaseProcess) -> None:
    if process.pid:
        try:
            os.kill(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
