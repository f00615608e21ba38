"""``python -m workers [MODEL ...] [--processes N] [--concurrency N]``: run worker processes.

Default: every configured model, each with its ``workers`` processes running up
to ``concurrency`` jobs at once. ``WORKER_MODELS`` (comma-separated),
``WORKER_PROCESSES`` and ``WORKER_CONCURRENCY`` do the same from the environment
(read by ``shared.settings``), so a deployment scales without editing the config;
the command line wins over both. One parent supervises the processes: it salvages
the jobs of one that dies (``workers.salvage``) and restarts it, and on SIGTERM or
SIGINT tells each to finish its running jobs and exit (a second signal makes them
fail their jobs and exit at once). SIGHUP reloads the config file (``workers.supervisor``):
a model added is started (unless a model list says otherwise), one removed retired once
its queue is empty, one changed restarted warmly; an invalid file is refused and logged.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from shared.config import ConfigError, exit_on_config_error, load_config
from shared.logs import setup_logging
from shared.metrics_directory import use_host_directory
from shared.plumbing.open_files import raise_open_files_limit
from shared.settings import Settings
from workers.patches import install_patches
from workers.selection import Selection

log = logging.getLogger("aigw.workers")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="models whose queues to serve (default: WORKER_MODELS, else all)")
    parser.add_argument("--processes", type=int, metavar="N",
                        help="worker processes per model (default: WORKER_PROCESSES, else the model's `workers`)")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve /metrics here (default: WORKER_METRICS_PORT, else none: on a host with a "
                             "web process, its metrics port already covers the workers)")
    parser.add_argument("--concurrency", type=int, metavar="N",
                        help="jobs at once per process (default: WORKER_CONCURRENCY, else the model's "
                             "`concurrency`)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # A reload asked before the supervisor listens would otherwise end the process: the file is read now.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = parse_args(argv)
    settings, problems = Settings.read()
    try:
        config = load_config(settings.config_file_path)
    except ConfigError as error:
        problems += error.problems
    processes = args.processes if args.processes is not None else settings.worker_processes
    concurrency = args.concurrency if args.concurrency is not None else settings.worker_concurrency
    metrics_port = args.metrics_port if args.metrics_port is not None else settings.worker_metrics_port
    for flag, value in (("--processes", args.processes), ("--concurrency", args.concurrency)):
        if value is not None and value < 1:
            problems.append(f"{flag}: must be at least 1")
    if problems:
        exit_on_config_error(problems)
    setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir, process_name="workers")
    for warning in config.warnings:
        log.warning(warning)

    named = args.models or list(settings.worker_models)
    unknown = [name for name in named if config.model(name) is None]
    if unknown:
        exit_on_config_error([f"MODEL: '{name}' is not a configured model" for name in unknown])
    selection = Selection(tuple(named), processes, concurrency)
    if not any(count for count, _ in selection.plan(config).values()):
        log.warning("no worker processes to run: every selected model has workers: 0")
        return 0
    # Before anything imports prometheus-client, which picks its storage once, on import;
    # the worker processes forked below inherit the choice.
    use_host_directory()
    raise_open_files_limit()  # every job holds a provider connection and a Redis one
    install_patches()  # every change a worker process makes to a library; forked processes inherit them
    from workers.supervisor import Supervisor

    return Supervisor(settings, config, selection, metrics_port=metrics_port).run()


if __name__ == "__main__":
    sys.exit(main())
