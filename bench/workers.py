"""Worker layouts compared: processes x jobs-at-once per process, through the whole
gateway, with a stand-in upstream that answers after 200 ms and 50 calls in flight.

    python -m bench.workers                 # 50x1, 4x16, 1x50
    python -m bench.workers --layouts 4x16,2x25 --duration 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.load import run_load
from bench.processes import rss_mb, tree
from bench.report import machine, publish
from sandbox.gitlab import DEMO_TOKEN
from tests.harness import Stack

CONFIG = """
models:
  - name: bench
    type: generic
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 60s
    workers: {processes}
    concurrency: {concurrency}
    max_queue_depth: 100000
"""
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}


def measure(layout: str, args) -> dict:
    processes, concurrency = (int(part) for part in layout.split("x"))
    stack = Stack(Path(tempfile.mkdtemp(prefix="aigw-bench-workers-")),
                  CONFIG.format(processes=processes, concurrency=concurrency),
                  web_workers=args.web_workers, web_threads=args.web_threads,
                  sandbox_latency_ms=args.latency_ms, env={"LOG_LEVEL": "warning"})
    try:
        stack.start()
        result = run_load(layout, f"{stack.url}/v1/chat/completions", BODY, concurrency=args.in_flight,
                          duration=args.duration, warmup=2.0, headers={"Authorization": f"Bearer {DEMO_TOKEN}"})
        supervisor = stack.workers.pid
        workers_mb = sum(rss_mb(pid) for pid in tree(supervisor) if pid != supervisor)
        return {"layout": layout, "result": result, "workers_mb": workers_mb,
                "supervisor_mb": rss_mb(supervisor) - workers_mb}
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default="50x1,4x16,1x50")
    parser.add_argument("--in-flight", type=int, default=50)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=64)
    args = parser.parse_args(argv)

    rows = [measure(layout, args) for layout in args.layouts.split(",")]
    baseline = rows[0]["result"].rps
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        f"Upstream latency {args.latency_ms} ms, {args.in_flight} requests in flight through the gateway "
        f"(gunicorn {args.web_workers} x {args.web_threads} threads), {args.duration:.0f} s per layout.",
        "",
        "| processes x jobs each | requests/s | vs first row | p50 ms | p99 ms | errors | worker RSS MB "
        "| MB per in-flight call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        result = row["result"]
        lines.append(
            f"| {row['layout']} | {result.rps:.0f} | {result.rps / baseline:.2f} | {result.p50_ms:.0f} | "
            f"{result.p99_ms:.0f} | {result.errors} | {row['workers_mb']:.0f} | "
            f"{row['workers_mb'] / args.in_flight:.1f} |")
    lines.append("")
    lines.append("Worker RSS counts the worker processes, not their supervisor "
                 f"(about {rows[0]['supervisor_mb']:.0f} MB, once per host).")
    publish("workers", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
