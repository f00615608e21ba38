"""What each child of the supervisor (``workers.supervisor``) runs: one model's RQ worker, or the
small process that serves a host's worker metrics. Each forgets the supervisor's signal handlers
(a SIGHUP to the process group is the supervisor's reload, never fatal here) and asks to die with
its parent, so no worker outlives the supervisor.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import socket

from shared.config import GatewayConfig
from shared.connections import redis_client
from shared.keys import queue_name
from shared.logs import setup_logging
from shared.metrics_directory import host_directory
from shared.settings import Settings
from workers.runtime import Runtime, set_runtime
from workers.salvage import worker_name
from workers.worker_classes import ThreadedWorker

PR_SET_PDEATHSIG = 1


def run_worker_process(settings: Settings, config: GatewayConfig, model_name: str, concurrency: int) -> None:
    """Body of one worker process: serve one model's queue until told to stop."""
    # Forget the supervisor's handlers; RQ installs its own once it starts working.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a reload is the supervisor's: a HUP to the group is not fatal
    _die_with_parent()
    setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir,
                  process_name=f"worker-{model_name}")
    set_runtime(Runtime(settings, config, pool_size=concurrency))
    # Every job thread, the monitor and the main loop may hold a connection at once.
    connection = redis_client(settings.redis_url, max_connections=concurrency + 8)
    name = worker_name(model_name, os.getpid(), socket.gethostname())
    worker = ThreadedWorker([queue_name(model_name)], connection=connection, name=name, concurrency=concurrency,
                            reply_ttl=config.jobs.result_ttl)
    gc.freeze()  # what start-up built lives as long as the process: out of the collector's full passes
    worker.work(logging_level=None)


def run_metrics_process(settings: Settings, config: GatewayConfig, port: int) -> None:
    """A host without a web process: this small child serves the workers' /metrics. (Not the
    supervisor itself: workers forked later would inherit its listening socket.)"""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _die_with_parent()
    setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir, process_name="worker-metrics")
    from shared.plumbing.metrics_server import start_metrics_server

    start_metrics_server(port, settings.redis_url, [m.name for m in config.models], host_directory(),
                         addr=settings.host, models=lambda: config.models)
    signal.pause()


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process if the supervisor dies, so no worker is orphaned."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: orphans are possible, but harmless to correctness
