"""Two (or more) versions of the gateway side by side: added latency at concurrency 1,
measured in one run with the requests interleaved.

    python -m bench.compare /path/to/checkout-a /path/to/checkout-b [--requests 400]

Each checkout (its own ``.venv``, made by ``make test`` there) starts its own stack:
Redis, sandbox provider (50 ms), gunicorn and workers. One client then sends rounds
of sequential requests, one to each stack and one to the first stack's provider
directly, in a shuffled order, so that every version sees the same machine at the
same moments. On these shared machines two runs of one version differ by about
±0.4 ms; within one interleaved run, versions differ by about ±0.2 ms. Give a
checkout twice to see that noise. Not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.gateway import BODY
from bench.report import machine, publish
from sandbox.gitlab import DEMO_TOKEN
from tests.harness import PROVIDER_KEY

# Run inside each checkout with its own code: only what every version of the harness has.
SERVE = """
import json, sys, tempfile
from pathlib import Path
from bench.gateway import CONFIG
from tests.harness import Stack
stack = Stack(Path(tempfile.mkdtemp(prefix="aigw-compare-")), CONFIG.format(workers=2), web_workers=2,
              web_threads=64, sandbox_latency_ms=50, env={"LOG_LEVEL": "warning"})
try:
    stack.start()
    print(json.dumps({"url": stack.url, "sandbox": stack.sandbox_url}), flush=True)
    sys.stdin.read()  # until the comparison closes our stdin
finally:
    stack.stop()
"""


class Target:
    def __init__(self, label: str, url: str, token: str):
        self.label = label
        parts = urlsplit(url)
        self.path = parts.path
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        self.seconds: list[float] = []

    def call(self, payload: bytes) -> float:
        started = time.perf_counter()
        self.connection.request("POST", self.path, body=payload, headers=self.headers)
        response = self.connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{self.label} answered HTTP {response.status}")
        return time.perf_counter() - started


def start(checkout: Path) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen([str(checkout / ".venv" / "bin" / "python"), "-c", SERVE], cwd=checkout,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"{checkout}: the stack did not start (run `make test` there first)")
    return process, json.loads(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--requests", type=int, default=400, help="rounds measured (after 30 warm-up rounds)")
    args = parser.parse_args(argv)
    processes, targets = [], []
    try:
        for index, checkout in enumerate(args.checkouts):
            process, urls = start(checkout.resolve())
            processes.append(process)
            if not targets:
                targets.append(Target("direct", urls["sandbox"] + "/v1/chat/completions", PROVIDER_KEY))
            targets.append(Target(f"{index}: {checkout}", urls["url"] + "/v1/chat/completions", DEMO_TOKEN))
        payload = json.dumps(BODY).encode()
        for round_number in range(args.requests + 30):
            for target in random.sample(targets, len(targets)):
                seconds = target.call(payload)
                if round_number >= 30:
                    target.seconds.append(seconds)
    finally:
        for process in processes:
            process.stdin.close()
        for process in processes:
            process.wait(timeout=60)
    direct = statistics.median(targets[0].seconds) * 1000
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
             f"{args.requests} interleaved rounds, concurrency 1, 50 ms provider; medians.", "",
             "| version | p50 ms | added ms |", "|---|---|---|", f"| direct | {direct:.2f} | |"]
    for target in targets[1:]:
        p50 = statistics.median(target.seconds) * 1000
        lines.append(f"| {target.label} | {p50:.2f} | {p50 - direct:.2f} |")
    publish("compare", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
