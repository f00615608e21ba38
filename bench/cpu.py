"""Where a request's CPU goes: CPU time per gateway request, per process, at concurrency 1.

    python -m bench.cpu            # one gunicorn worker, one worker process, 0 ms upstream

At concurrency 1 the added latency is mostly CPU on the request's path, so this
shows which process to make cheaper. Not a test: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.gateway import BODY, CONFIG
from bench.load import run_load
from bench.processes import children, cpu_seconds
from bench.report import machine, publish
from sandbox.gitlab import DEMO_TOKEN
from tests.harness import PROVIDER_KEY, Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=0, help="sandbox provider latency")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    stack = Stack(Path(tempfile.mkdtemp(prefix="aigw-bench-")), CONFIG.format(workers=1), web_workers=1,
                  web_threads=16, sandbox_latency_ms=args.latency_ms, env={"LOG_LEVEL": "warning"})
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
             f"Sandbox provider latency {args.latency_ms} ms; 1 gunicorn worker; 1 worker process; "
             f"concurrency 1; {args.duration:.0f} s per run.", "",
             "| run | direct p50 ms | gateway p50 ms | added ms | CPU ms/request: web | worker | redis |",
             "|---|---|---|---|---|---|---|"]
    try:
        stack.start()
        gateway_url, direct_url = f"{stack.url}/v1/chat/completions", f"{stack.sandbox_url}/v1/chat/completions"
        gateway_headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
        run_load("warm-up", gateway_url, BODY, concurrency=1, duration=2, headers=gateway_headers)
        pids = {"web": children(stack.web.pid)[0],
                "worker": children(stack.workers.pid)[0],
                "redis": stack.redis_server.process.pid}
        for run in range(1, args.runs + 1):
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            # No warm-up inside the run: every request counted is one the CPU time covers.
            gateway = run_load("gateway", gateway_url, BODY, concurrency=1, duration=args.duration,
                               headers=gateway_headers, warmup=0)
            used = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
            direct = run_load("direct", direct_url, BODY, concurrency=1, duration=args.duration / 2,
                              headers={"Authorization": f"Bearer {PROVIDER_KEY}"})
            count = max(1, len(gateway.latencies))
            per_request = [f"{used[name] / count * 1000:.2f}" for name in ("web", "worker", "redis")]
            lines.append(f"| {run} | {direct.p50_ms:.2f} | {gateway.p50_ms:.2f} | "
                         f"{gateway.p50_ms - direct.p50_ms:.2f} | {' | '.join(per_request)} |")
    finally:
        stack.stop()
    publish("cpu", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
