"""Gateway layouts side by side: throughput and CPU per request of several process and
thread layouts, interleaved in rounds, each stack alone on the machine.

    python -m bench.layouts --layouts 2x64/2x16,2x768/4x256 --rounds 3 --concurrency 50

A layout is ``<WEB_CONCURRENCY>x<WEB_THREADS>/<worker processes>x<jobs per process>``,
optionally followed by ``+NAME=value`` settings of the gateway's environment
(``2x64/2x16+LOG_LEVEL=info``; LOG_LEVEL is warning unless one says otherwise).
Everything else is as ``bench.peers`` runs the gateway (identity, three limits, a 50 ms
sandbox provider, shared by every stack); the layouts' order changes from round to round.
Not a test: compare within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.peers.phases import Phase, measure, run_stack
from bench.peers.stacks import Gateway, GatewayLayout
from bench.report import machine, publish
from tests.harness import PROVIDER_KEY, start_sandbox


def parse_layout(text: str) -> GatewayLayout:
    shape, *settings = text.split("+")
    web, _, workers = shape.partition("/")
    web_concurrency, web_threads = (int(n) for n in web.split("x"))
    processes, concurrency = (int(n) for n in workers.split("x"))
    env = tuple(tuple(setting.split("=", 1)) for setting in settings)
    return GatewayLayout(web_concurrency, web_threads, processes, concurrency, env)


def name(layout: GatewayLayout) -> str:
    return (f"{layout.web_concurrency}x{layout.web_threads}/{layout.workers}x{layout.concurrency}"
            + "".join(f"+{key}={value}" for key, value in layout.env))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", required=True, help="comma-separated, e.g. 2x64/2x16,2x768/4x256")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="50")
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    layouts = [parse_layout(text) for text in args.layouts.split(",")]

    directory = Path(tempfile.mkdtemp(prefix="aigw-bench-layouts-"))
    sandbox, sandbox_url = start_sandbox(directory, dict(os.environ), latency_ms=args.latency_ms)
    phases: list[tuple[str, Phase]] = []
    direct: dict[tuple[int, int], float] = {}
    try:
        for round_number in range(1, args.rounds + 1):
            for concurrency in args.concurrency:
                phase = measure("direct", round_number, f"{sandbox_url}/v1/chat/completions",
                                PROVIDER_KEY, concurrency, args, {}, sandbox.pid)
                direct[(round_number, concurrency)] = phase.load.p50_ms
            shift = (round_number - 1) % len(layouts)
            for layout in layouts[shift:] + layouts[:shift]:
                stack = Gateway(directory / f"round{round_number}-{layouts.index(layout)}", sandbox_url, layout)
                phases += [(name(layout), p) for p in run_stack(stack, round_number, args, sandbox.pid)]
    finally:
        sandbox.stop()
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
             f"`python -m bench.layouts --layouts {args.layouts} --rounds {args.rounds}`: layouts as "
             "WEB_CONCURRENCY x WEB_THREADS / worker processes x jobs each; identity and three limits; sandbox "
             f"{args.latency_ms} ms; {args.duration:g} s per measurement; medians over the rounds.", "",
             "| layout | concurrency | requests/s (each round) | p50 ms | added p50 ms | CPU ms/request | web | "
             "workers | redis | client | machine busy % | of which others % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    med = statistics.median
    for layout in layouts:
        for concurrency in args.concurrency:
            chosen = [p for n, p in phases if n == name(layout) and p.concurrency == concurrency]
            if not chosen:
                continue
            def role(prefix: str, chosen=chosen) -> float:
                return med(sum(ms for r, ms in p.cpu_ms.items() if r.startswith(prefix)) for p in chosen)

            rounds = ", ".join(f"{p.load.rps:.0f}" for p in chosen)
            lines.append(
                f"| {name(layout)} | {concurrency} | **{med(p.load.rps for p in chosen):.0f}** ({rounds}) | "
                f"{med(p.load.p50_ms for p in chosen):.1f} | "
                f"{med(p.load.p50_ms - direct[(p.round, concurrency)] for p in chosen):.2f} | "
                f"{med(p.own_ms for p in chosen):.2f} | {role('web'):.2f} | {role('worker'):.2f} | "
                f"{role('redis'):.2f} | {med(p.client_ms for p in chosen):.2f} | "
                f"{med(p.machine_busy for p in chosen):.0f} | {med(p.others_busy for p in chosen):.0f} |")
    publish("layouts", lines)
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
