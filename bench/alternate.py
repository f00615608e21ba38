"""Two (or more) versions of the gateway at concurrency 50, one at a time, alternating:
requests/s and CPU per request of each, measured as ``bench.peers`` measures the gateway.

    python -m bench.alternate /path/to/checkout-a /path/to/checkout-b [--rounds 6]

``bench.compare`` interleaves requests to every version at once, which is right for
latency at concurrency 1 but not for throughput: at concurrency 50 each version must have
the machine to itself. Here each round runs ``python -m bench.peers --stacks gateway
--rounds 1`` in each checkout (its own ``.venv`` and code), the order reversed every other
round, so that both see the machine's quiet and busy spells alike. On these shared
machines one version's rounds spread by about a fifth; compare the medians, and the rounds
paired. Not a test.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import machine, publish

RESULT = re.compile(r"gateway c=(?P<concurrency>\d+): (?P<rps>\d+) requests/s, p50 [\d.]+ ms, "
                    r"(?P<cpu>[\d.]+) ms CPU/request, (?P<errors>\d+) errors")


def one_round(checkout: Path, concurrency: int, duration: float) -> tuple[float, float]:
    """requests/s and the gateway's own CPU ms per request, from one ``bench.peers`` round there."""
    command = [str(checkout / ".venv" / "bin" / "python"), "-m", "bench.peers", "--stacks", "gateway",
               "--rounds", "1", "--concurrency", str(concurrency), "--duration", str(duration),
               "--no-egress-check"]
    done = subprocess.run(command, cwd=checkout, capture_output=True, text=True, timeout=600)
    found = RESULT.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{checkout}: bench.peers failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if int(found["errors"]):
        raise SystemExit(f"{checkout}: {found['errors']} requests failed")
    return float(found["rps"]), float(found["cpu"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per round")
    args = parser.parse_args(argv)
    checkouts = [path.resolve() for path in args.checkouts]
    results: dict[int, list[tuple[float, float]]] = {index: [] for index in range(len(checkouts))}
    for round_number in range(args.rounds):
        order = list(range(len(checkouts)))
        if round_number % 2:
            order.reverse()
        for index in order:
            rps, cpu = one_round(checkouts[index], args.concurrency, args.duration)
            results[index].append((rps, cpu))
            print(f"round {round_number + 1}: {index}: {rps:.0f} requests/s, {cpu:.2f} ms CPU/request", flush=True)
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
             f"{args.rounds} alternating rounds, concurrency {args.concurrency}, {args.duration:g} s each "
             "(`bench.peers --stacks gateway --rounds 1` in each checkout); medians.", "",
             "| version | requests/s | CPU ms/request (own) | requests/s by round |", "|---|---|---|---|"]
    for index, checkout in enumerate(checkouts):
        rounds = results[index]
        lines.append(f"| {index}: {checkout} | {statistics.median(r for r, _ in rounds):.0f} | "
                     f"{statistics.median(c for _, c in rounds):.2f} | {', '.join(f'{r:.0f}' for r, _ in rounds)} |")
    publish("alternate", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
