"""``python -m workers.inspect deployments``: each model's deployments and their health (``shared.breaker``).

    python -m workers.inspect deployments [MODEL] [--json]      healthy, cooling down (and when its probe
                                                                may go) or failed (and why), for each model
                                                                with several deployments or fallbacks
    python -m workers.inspect deployments MODEL --clear NAME    make a deployment healthy again (a failed one
                                                                after its key was fixed, or a cooling one)
    python -m workers.inspect deployments MODEL --clear-all     every deployment of MODEL

A deployment failed by a 401 (or repeated 403s) stays failed until the config is
reloaded (SIGHUP) or this clears it. Registered in ``workers.inspect``'s table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from shared.breaker import clear, read_states
from shared.config import ConfigError, ModelConfig, load_config
from shared.settings import Settings


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", nargs="?",
                        help="one model (default: every model with several deployments or fallbacks)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--clear", metavar="NAME", help="make deployment NAME of MODEL healthy again")
    which.add_argument("--clear-all", action="store_true", help="make every deployment of MODEL healthy again")


def run(inspection, args: argparse.Namespace) -> int:
    out = inspection.out
    models = _models()
    if models is None:
        return 2
    if args.model is not None and args.model not in models:
        return _refuse(f"MODEL: '{args.model}' is not a configured model")
    if args.clear is not None or args.clear_all:
        if args.model is None:
            return _refuse("--clear and --clear-all need a MODEL")
        model = models[args.model]
        if args.clear is not None and args.clear not in {d.name for d in model.upstreams}:
            return _refuse(f"--clear: '{args.clear}' is not a deployment of model '{model.name}' "
                           f"({', '.join(d.name for d in model.upstreams)})")
        cleared = clear(inspection.redis, model, args.clear)
        print(f"{model.name}: " + (f"cleared {', '.join(cleared)}" if cleared else "nothing to clear: healthy"),
              file=out)
        return 0
    now = time.time()
    # Every model whose deployments' health is kept (several deployments, or fallbacks), or the one named.
    report = {name: {d: state.describe(now) for d, state in read_states(inspection.redis, model).items()}
              for name, model in models.items() if args.model == name or (args.model is None and model.uses_breaker)}
    if args.json:
        print(json.dumps({"models": report}, separators=(",", ":")), file=out)
        return 0
    rows = [("MODEL", "DEPLOYMENT", "STATE", "DETAIL")]
    for name, deployments in report.items():
        for deployment, shown in deployments.items():
            rows.append((name, deployment, shown["state"], _detail(shown)))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3],
              file=out)
    return 0


def _detail(shown: dict) -> str:
    if "probe_in_seconds" in shown:
        seconds = shown["probe_in_seconds"]
        return f"probe in {seconds}s" if seconds else "probe due (the next call tries it)"
    if "reason" in shown:
        return f"{shown['reason']}: until a reload or --clear"
    return ""


def _models() -> dict[str, ModelConfig] | None:
    settings, _ = Settings.read()
    try:
        config = load_config(settings.config_file_path)
    except ConfigError as error:
        for problem in error.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return None
    return {m.name: m for m in config.models}


def _refuse(problem: str) -> int:
    print(problem, file=sys.stderr)
    return 2


# What workers.inspect's table holds for this subcommand (``Subcommand(**DEPLOYMENTS)``).
DEPLOYMENTS = {
    "help": "each model's deployments: healthy, cooling down or failed; --clear one",
    "description": "Each model's deployments and their health, shared by every worker (shared.breaker). "
                   "--clear NAME (or --clear-all) makes a failed or cooling deployment healthy again.",
    "arguments": arguments,
    "run": run,
    "epilog": "A deployment failed by a 401 (or repeated 403s) stays failed until a reload (SIGHUP) or --clear.",
}
