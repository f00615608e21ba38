"""``python -m workers.inspect``: the queues, per model, as an operator needs them.

    python -m workers.inspect [--json] [--watch [SECONDS]]    queued, in progress, live workers, failed,
                                                              and the age of the oldest queued job
    python -m workers.inspect failed MODEL [--json] [--limit N]
                                                              the model's failed jobs: id, when, error,
                                                              request id (never the prompt)
    python -m workers.inspect purge MODEL                     remove the model's failed jobs and their records

Failed jobs stay in RQ's failed registry for ``jobs.failure_ttl`` and are never requeued: every
failed job's client has already had its answer (an error), so running it again would answer
nobody and could call the provider twice. ``GET /admin/queues`` answers what ``--json`` prints.

Each subcommand is a ``Subcommand`` in the table ``SUBCOMMANDS``; another module's joins it there.
Reads ``REDIS_URL`` and ``CONFIG_FILE_PATH`` as the workers do; with a config file that does not
load, it says so and lists the queues registered in Redis instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from redis import Redis
from redis.exceptions import RedisError

from shared.config import ConfigError, load_config
from shared.connections import redis_client
from shared.queue_report import failed_report, queue_report
from shared.rq_inspection import known_queues, purge_failed
from shared.settings import Settings, masked_url
from workers.inspect_deployments import DEPLOYMENTS

WATCH_DEFAULT, WATCH_MIN, WATCH_MAX = 2.0, 0.5, 60.0  # seconds between refreshes
CLEAR = "\x1b[H\x1b[2J"
NOT_REQUEUED = ("Failed jobs are never requeued: every failed job's client has already had its answer "
                "(an error); they stay for jobs.failure_ttl.")


@dataclass
class Inspection:
    """What a subcommand works with: Redis, the configured models (None: the file did not load),
    and where to print."""

    redis: Redis
    models: list[str] | None
    out: TextIO

    def model(self, name: str) -> str | None:
        """``name`` if it is a configured model or a queue Redis knows: nothing else names a key."""
        if self.models is not None and name in self.models:
            return name
        return name if name in known_queues(self.redis) else None


@dataclass(frozen=True)
class Subcommand:
    """One ``python -m workers.inspect NAME ...``: its help, its arguments, and what it runs
    (an exit status back; ``RedisError`` is handled by ``main``). Another module's subcommand
    joins the table ``SUBCOMMANDS`` with one line."""

    help: str
    description: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Inspection, argparse.Namespace], int]
    epilog: str = ""


def _failed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("--json", action="store_true", help="a JSON list")
    parser.add_argument("--limit", type=_limit, default=100, metavar="N", help="at most N jobs (1-10000, default 100)")


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL")


def _limit(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= 10000:
        raise argparse.ArgumentTypeError("N must be between 1 and 10000")
    return value


def _failed(inspection: Inspection, args: argparse.Namespace) -> int:
    model, out = inspection.model(args.model), inspection.out
    if model is None:
        return _unknown_model(args.model)
    jobs = failed_report(inspection.redis, model, limit=args.limit)
    if args.json:
        print(json.dumps(jobs, separators=(",", ":")), file=out)
        return 0
    print(f"{model}: {len(jobs)} failed job{'s' * (len(jobs) != 1)}"
          f"{f' (the latest {args.limit})' if len(jobs) == args.limit else ''}. {NOT_REQUEUED}", file=out)
    for job in jobs:
        print(f"{job['job_id']}  {job['failed_at'] or '-'}  request_id={job['request_id'] or '-'}  "
              f"{job['endpoint'] or '-'}  {job['error'] or '-'}", file=out)
    return 0


def _purge(inspection: Inspection, args: argparse.Namespace) -> int:
    model = inspection.model(args.model)
    if model is None:
        return _unknown_model(args.model)
    removed = purge_failed(inspection.redis, model)
    print(f"{model}: removed {removed} failed job{'s' * (removed != 1)} and their records", file=inspection.out)
    return 0


def _unknown_model(name: str) -> int:
    return _refuse([f"MODEL: '{name}' is neither a configured model nor a queue in Redis"])


SUBCOMMANDS: dict[str, Subcommand] = {
    "failed": Subcommand("list a model's failed jobs: id, when, error, request id",
                         "A model's failed jobs, latest first: id, when, error, request id (never the prompt).",
                         _failed_arguments, _failed, NOT_REQUEUED),
    "purge": Subcommand("remove a model's failed jobs and their records",
                        "Remove every failed job of MODEL from the failed registry, with its records. "
                        "Nothing is requeued.", _model_argument, _purge, NOT_REQUEUED),
    "deployments": Subcommand(**DEPLOYMENTS),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m workers.inspect", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Per model: jobs queued, in progress, live workers, failed, and the age of the oldest "
                    "queued job.", epilog=NOT_REQUEUED)
    parser.add_argument("--json", action="store_true", help="one JSON object (with --watch: one per refresh)")
    parser.add_argument("--watch", nargs="?", type=float, const=WATCH_DEFAULT, metavar="SECONDS",
                        help=f"refresh every SECONDS ({WATCH_MIN:g}-{WATCH_MAX:g}, default {WATCH_DEFAULT:g}) "
                             "until Ctrl-C")
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, subcommand in SUBCOMMANDS.items():
        subparser = commands.add_parser(name, help=subcommand.help, description=subcommand.description,
                                        epilog=subcommand.epilog)
        subcommand.arguments(subparser)
    args = parser.parse_args(argv)
    if args.watch is not None and not WATCH_MIN <= args.watch <= WATCH_MAX:
        parser.error(f"--watch: SECONDS must be between {WATCH_MIN:g} and {WATCH_MAX:g}")
    return args


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = parse_args(argv)
    out = out or sys.stdout
    settings, problems = Settings.read()
    problems = [problem for problem in problems if problem.startswith(("REDIS_URL", "CONFIG_FILE_PATH"))]
    if problems:
        return _refuse(problems)
    inspection = Inspection(redis_client(settings.redis_url, max_connections=2),
                            _configured_models(settings.config_file_path), out)
    try:
        if args.command is None:
            return _show(inspection.redis, inspection.models, args, out)
        return SUBCOMMANDS[args.command].run(inspection, args)
    except RedisError as error:
        print(f"cannot reach Redis at {masked_url(settings.redis_url)}: {error}", file=sys.stderr)
        return 1


def _show(redis: Redis, models: list[str] | None, args: argparse.Namespace, out: TextIO) -> int:
    if args.watch is None:
        _print_report(_report(redis, models), args.json, out)
        return 0
    clear = out.isatty() and not args.json
    try:
        while True:
            try:
                report = _report(redis, models)
            except RedisError as error:  # keep watching: Redis may come back
                print(f"{_now()}  Redis unreachable: {error}", file=out, flush=True)
            else:
                if clear:
                    out.write(CLEAR)
                elif not args.json:
                    print(f"-- {_now()}", file=out)
                _print_report(report, args.json, out)
            out.flush()
            time.sleep(args.watch)
    except KeyboardInterrupt:
        if clear:
            print(file=out)
        return 0


def _report(redis: Redis, models: list[str] | None) -> dict:
    return queue_report(redis, models if models is not None else known_queues(redis))


def _print_report(report: dict, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(report, separators=(",", ":")), file=out)
        return
    rows = [("MODEL", "QUEUED", "IN PROGRESS", "WORKERS", "FAILED", "OLDEST QUEUED")]
    for name, facts in report["models"].items():
        rows.append((name + ("" if facts["configured"] else " *"), str(facts["queued"]), str(facts["in_progress"]),
                     str(facts["workers"]), str(facts["failed"]), age(facts["oldest_queued_age_seconds"])))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip(), file=out)
    if any(not facts["configured"] for facts in report["models"].values()):
        print("* not in the configuration (a removed model's queue with something left in it)", file=out)
    if report["suspended"]:
        print("rq suspend is in force: workers take no new jobs until `rq resume`", file=out)


def _configured_models(path: str) -> list[str] | None:
    """The configured models' names; None (with the problems said) if the file does not load."""
    try:
        return [model.name for model in load_config(path).models]
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        print("(listing the queues registered in Redis instead)", file=sys.stderr)
        return None


def _refuse(problems: list[str]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 2


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
    """A waiting time as a person reads it: ``-``, ``4.2s``, ``12m04s``, ``3h07m``."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


if __name__ == "__main__":
    sys.exit(main())
