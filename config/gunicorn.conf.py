"""gunicorn settings for the API (``web`` in the Procfile). Configured only by the
environment, so the same file serves ``make run``, compose and Kubernetes.

gunicorn runs this file at start and again, in its master, on every SIGHUP, then
replaces its workers gracefully: that is how the web processes reload the gateway's
config file (``api.startup.accept``: an invalid file keeps the config in force, and
the master lives on).

gthread workers: every request holds its thread while it waits on Redis for the
model's answer, so each process needs many threads (about 1.5-2x the requests
you expect open at once, since connections spread unevenly over processes).
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.metrics_directory import use_host_directory

# Before anything imports prometheus-client, which picks its storage once, on import.
# The workers gunicorn forks inherit both the choice and the metrics created here.
METRICS_DIRECTORY = use_host_directory()

from api.patches import install_patches  # noqa: E402
from api.startup import MODEL_NAMES, accept, check_gateway_token, longest_stream, served  # noqa: E402
from shared import metrics  # noqa: E402
from shared.plumbing.open_files import raise_open_files_limit  # noqa: E402

# Refuse to start on a bad config here, in the master: a worker that exits during
# boot would only be respawned over and over. On a reload a bad config is logged and
# the one in force kept: the workers gunicorn forks next serve what the master accepted.
_settings, _config, _reloading = accept()
if not _reloading:  # the environment, and so the token, is the master's own: checked once
    check_gateway_token(_settings, _config)
# Every change the web processes make to a library (gunicorn's refusals, RQ), made here
# once: the workers gunicorn forks inherit them.
install_patches()

bind = f"[{_settings.host}]:{_settings.port}" if ":" in _settings.host else f"{_settings.host}:{_settings.port}"
# Receives each request whole before a thread serves it; caps each client's connections.
worker_class = "api.web_worker.GatewayThreadWorker"
workers = _settings.web_concurrency
threads = _settings.web_threads
# Proxies whose X-Forwarded-For names the client (and whose X-Forwarded-Proto gunicorn believes).
forwarded_allow_ips = _settings.forwarded_allow_ips
# Idle and slow connections cost a descriptor each, not a thread: many may stay open. Each
# process keeps some descriptors for its threads' Redis connections and its logs.
_open_files = raise_open_files_limit()
worker_connections = min(_settings.web_connections, max(64, _open_files - 2 * threads - 64))
if worker_connections < _settings.web_connections:
    logging.getLogger("aigw.api").warning(
        "WEB_CONNECTIONS lowered to what the open-files limit allows",
        extra={"web_connections": worker_connections, "open_files_limit": _open_files})
logger_class = "api.gunicorn_logging.GatewayLogger"  # gunicorn's own lines in LOG_FORMAT
# gthread's timeout is about a stuck worker process, not a request; still keep it
# past the longest model deadline so no request is ever cut by it.
timeout = int(_config.max_timeout) + 30
# A stream holds its thread for its whole length; a graceful stop (a reload's too) lets it
# finish, under whichever configuration it started.
graceful_timeout = int(longest_stream()) + 15
keepalive = 75  # longer than common load balancer idle timeouts (60 s)
accesslog = None  # the app writes its own access records, with request ids
errorlog = "-"
loglevel = _settings.log_level if _settings.log_level != "warning" else "warning"
proc_name = "ai-gateway-api"
# gunicorn 25+ opens a control socket at one fixed path per user; several gateways
# on one host would fight over it, and nothing here uses it.
control_socket_disable = True


def when_ready(server):
    """The master serves /metrics on its own port: every worker process's files summed,
    the RQ workers' on this host included, plus queue facts read from Redis."""
    metrics.forget_dead_processes(METRICS_DIRECTORY)
    if _settings.metrics_enabled:
        from shared.plumbing.metrics_server import start_metrics_server

        # MODEL_NAMES, not a copy: a reload updates it in place, so a model added is measured too.
        start_metrics_server(_settings.metrics_port, _settings.redis_url, MODEL_NAMES, METRICS_DIRECTORY,
                             addr=_settings.host, models=lambda: served()[1].models)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
