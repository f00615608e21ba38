"""``python -m workers [MODEL ...] [--processes N]``: run worker processes.

Default: every configured model, each with its ``workers`` count. One parent
supervises the worker processes: it restarts one that dies, and on SIGTERM or
SIGINT tells each to finish its running job and exit (a second signal makes
them drop their jobs and exit at once).
"""

from __future__ import annotations

import argparse
import logging
import sys

from shared.config import ConfigError, exit_on_config_error, load_config
from shared.logs import setup_logging
from shared.settings import Settings
from workers.supervisor import Supervisor

log = logging.getLogger("aigw.workers")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="models whose queues to serve (default: all)")
    parser.add_argument("--processes", type=int, metavar="N",
                        help="worker processes per model (default: the model's `workers`)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env()
        config = load_config(settings.config_file_path)
    except ConfigError as error:
        exit_on_config_error(error.problems)
    setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir,
                  process_name="workers")
    for warning in config.warnings:
        log.warning(warning)
    names = args.models or [model.name for model in config.models]
    unknown = [name for name in names if config.model(name) is None]
    if unknown:
        exit_on_config_error([f"MODEL: '{name}' is not a configured model" for name in unknown])
    if args.processes is not None and args.processes < 1:
        exit_on_config_error(["--processes: must be at least 1"])
    # A model named on the command line gets at least one process even with `workers: 0`
    # (which means "not started by default", e.g. served from another host).
    floor = 1 if args.models else 0
    plan = {name: args.processes if args.processes is not None else max(floor, config.model(name).workers)
            for name in names}
    if not any(plan.values()):
        log.warning("no worker processes to run: every selected model has workers: 0")
        return 0
    return Supervisor(settings, config, plan).run()


if __name__ == "__main__":
    sys.exit(main())
