"""Capacity: how many open streams one host holds, each receiving one chunk a second,
with the API (gunicorn) and the workers on the same machine.

    python -m bench.capacity                      # steps 100,250,500,1000,1250,1500,2000
    python -m bench.capacity --steps 1000 --web-threads 512 --workers 3 --concurrency 400

Each step starts a fresh gateway (real processes: tests.harness.Stack), opens its
streams through it (bench.open_streams: one connection each, spread over source
addresses), waits until they are all open, then measures for ``--hold`` seconds: how
many streams are open and receiving on time, how late each chunk arrives after the
provider sent it, and every process's memory, CPU, threads and descriptors, Redis's
clients and memory. Then the client closes its streams (the gateway cancels their
jobs) and the stack stops. Steps stop once one fails to hold its streams.

A stream counts as on time when it was open through the whole window and every chunk
the provider sent in it arrived within ``--late-ms`` (default: one interval) and none
was missing. Not a test: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.open_streams import StreamRecord, hold_stream, request_bytes, source_address
from bench.processes import sample, stack_processes
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
    workers: {workers}
    concurrency: {concurrency}
    max_queue_depth: 100000
"""
OPEN_GRACE = 20.0  # seconds past the ramp a stream may take to open and still be measured
SETTLE = 3.0  # seconds between the last stream opening and the window
SAMPLE_EVERY = 5.0  # seconds between process samples in the window (peaks)
GATEWAY = ("web", "worker", "redis")  # the gateway's own processes, not the stand-ins


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_step(stack: Stack, streams: int, args) -> dict:
    redis = stack.redis()
    processes = stack_processes(stack, redis)
    loop = asyncio.get_running_loop()
    idle = await loop.run_in_executor(None, sample, processes)

    interval = args.interval_ms / 1000
    ramp = streams / args.ramp_rate
    words = math.ceil((ramp + OPEN_GRACE + SETTLE + args.hold + 5) / interval)
    payload = request_bytes("127.0.0.1", stack.port, DEMO_TOKEN, "bench", words, args.interval_ms)
    records = [StreamRecord(i, source_address(i, args.per_address)) for i in range(streams)]

    async def one(record: StreamRecord) -> None:
        await asyncio.sleep(record.index / args.ramp_rate)
        await hold_stream(record, "127.0.0.1", stack.port, payload, open_timeout=ramp + OPEN_GRACE,
                          read_timeout=max(30.0, 10 * interval))

    tasks = [asyncio.create_task(one(record)) for record in records]
    started = time.time()
    open_by = started + ramp + OPEN_GRACE
    while time.time() < open_by and not all(r.arrivals or r.error for r in records):
        await asyncio.sleep(0.2)
    await asyncio.sleep(SETTLE)

    window_start = time.time()
    first = await loop.run_in_executor(None, sample, processes)
    cpu_first, client_first = machine_cpu(), os.times()
    peaks = {label: dict(values) for label, values in first.items()}
    while time.time() < window_start + args.hold:
        await asyncio.sleep(min(SAMPLE_EVERY, window_start + args.hold - time.time()))
        for label, values in (await loop.run_in_executor(None, sample, processes)).items():
            for key in ("rss_mb", "threads", "fds"):
                peaks.setdefault(label, dict(values))[key] = max(peaks[label][key], values[key])
    window_end = time.time()
    last = await loop.run_in_executor(None, sample, processes)
    cpu_last, client_last = machine_cpu(), os.times()
    info = await loop.run_in_executor(None, lambda: {**redis.info("clients"), **redis.info("memory")})
    for task in tasks:
        task.cancel()  # the client closes its streams; the gateway cancels their jobs
    await asyncio.gather(*tasks, return_exceptions=True)

    seconds = window_end - window_start
    lateness, on_time, open_through = [], 0, 0
    for record in records:
        late = record.lateness_in(window_start, window_end)
        lateness += late
        through = record.opened is not None and record.opened < window_start and (
            record.error is None or record.error == "cancelled") and late
        if through:
            open_through += 1
            # one chunk per interval sent in the window (give or take the one at each edge)
            if max(late) <= args.late_ms / 1000 and len(late) >= seconds / interval - 2:
                on_time += 1
    errors = Counter(r.error for r in records if r.error)
    busy = (cpu_last[0] - cpu_first[0]) / (cpu_last[1] - cpu_first[1]) * len(os.sched_getaffinity(0)) * 100
    client_cpu = (client_last.user + client_last.system - client_first.user - client_first.system) / seconds * 100
    per_process = {}
    for label, values in last.items():
        cpu = (values["cpu_s"] - first[label]["cpu_s"]) / seconds * 100 if label in first else float("nan")
        per_process[label] = {"rss_mb": peaks[label]["rss_mb"], "idle_mb": idle.get(label, {}).get("rss_mb", 0.0),
                              "cpu": cpu, "threads": peaks[label]["threads"], "fds": peaks[label]["fds"]}
    return {
        "streams": streams, "opened": sum(1 for r in records if r.status == 200), "open_through": open_through,
        "on_time": on_time, "errors": errors, "lateness": lateness, "chunks_per_s": len(lateness) / seconds,
        "p50_ms": percentile(lateness, 0.5) * 1000, "p99_ms": percentile(lateness, 0.99) * 1000,
        "max_ms": max(lateness, default=float("nan")) * 1000, "busy": busy, "client_cpu": client_cpu,
        "processes": per_process, "redis_clients": info.get("connected_clients"),
        "redis_used_mb": info.get("used_memory", 0) / 2**20, "seconds": seconds,
    }


def group(result: dict, prefix: str, key: str) -> float:
    return sum(v[key] for label, v in result["processes"].items() if label.startswith(prefix))


def summary_row(r: dict) -> str:
    web, workers = group(r, "web", "rss_mb"), group(r, "worker", "rss_mb")
    web_idle, workers_idle = group(r, "web", "idle_mb"), group(r, "worker", "idle_mb")
    per_stream = (web + workers - web_idle - workers_idle) / r["streams"] * 1024
    total = sum(v["rss_mb"] for v in r["processes"].values())
    gateway_cpu = sum(v["cpu"] for label, v in r["processes"].items() if label.startswith(GATEWAY))
    return (f"| {r['streams']} | {r['opened']} | {r['open_through']} | {r['on_time']} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['chunks_per_s']:.0f} | {web:.0f} | {workers:.0f} | "
            f"{r['processes'].get('redis', {}).get('rss_mb', 0):.0f} / {r['redis_used_mb']:.1f} | {total:.0f} | "
            f"{per_stream:.0f} | {gateway_cpu:.0f} | {r['busy']:.0f} | {r['client_cpu']:.0f} | {r['redis_clients']} | "
            f"{', '.join(f'{n} {e}' for e, n in r['errors'].most_common()) or 'none'} |")


SUMMARY_HEAD = [
    "| streams | opened | open through the window | on time | lateness p50 ms | p99 ms | max ms | chunks/s | "
    "web MB | workers MB | Redis MB (RSS / used) | all MB | KB per stream (web + workers) | gateway CPU % | "
    "machine CPU % | client CPU % | Redis clients | errors |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def detail(r: dict) -> list[str]:
    lines = [f"{r['streams']} streams, every process (RSS: peak in the window; idle: before the step):", "",
             "| process | RSS MB | idle MB | CPU % | threads | fds |", "|---|---|---|---|---|---|"]
    for label, v in r["processes"].items():
        lines.append(f"| {label} | {v['rss_mb']:.1f} | {v['idle_mb']:.1f} | {v['cpu']:.1f} | {v['threads']} | "
                     f"{v['fds']} |")
    return lines + [""]


def run(args) -> list[dict]:
    results = []
    for streams in [int(s) for s in args.steps.split(",")]:
        env = {"LOG_LEVEL": "warning"}
        if args.web_threads >= 1000:  # gunicorn's worker_connections (1000) bounds a process's connections
            env["GUNICORN_CMD_ARGS"] = f"--worker-connections {args.web_threads + 1000}"
        stack = Stack(Path(tempfile.mkdtemp(prefix="aigw-bench-capacity-")),
                      CONFIG.format(workers=args.workers, concurrency=args.concurrency),
                      web_workers=args.web_concurrency, web_threads=args.web_threads, env=env)
        try:
            stack.start()
            result = asyncio.run(run_step(stack, streams, args))
        finally:
            stack.stop()
        results.append(result)
        print(summary_row(result), flush=True)
        if result["on_time"] < 0.95 * streams:
            break  # this step did not hold; larger ones will not either
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,250,500,1000,1250,1500,2000", help="open streams per step")
    parser.add_argument("--hold", type=float, default=30.0, help="seconds measured per step, all streams open")
    parser.add_argument("--interval-ms", type=int, default=1000, help="time between a stream's chunks")
    parser.add_argument("--late-ms", type=int, default=None, help="a chunk later than this is late "
                        "(default: one interval)")
    parser.add_argument("--ramp-rate", type=float, default=100.0, help="streams opened per second")
    parser.add_argument("--per-address", type=int, default=100, help="streams per client source address")
    parser.add_argument("--web-concurrency", type=int, default=2, help="WEB_CONCURRENCY")
    parser.add_argument("--web-threads", type=int, default=768, help="WEB_THREADS")
    parser.add_argument("--workers", type=int, default=4, help="the model's `workers` (processes)")
    parser.add_argument("--concurrency", type=int, default=256, help="the model's `concurrency` (jobs per process)")
    args = parser.parse_args(argv)
    args.late_ms = args.late_ms if args.late_ms is not None else args.interval_ms

    results = run(args)
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}, "
        f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB.",
        f"WEB_CONCURRENCY={args.web_concurrency}, WEB_THREADS={args.web_threads}; the model's workers: "
        f"{args.workers} x concurrency {args.concurrency}. One chunk every {args.interval_ms} ms per stream; "
        f"streams opened at {args.ramp_rate:.0f}/s from {args.per_address} per source address (127.0.0.2 on); "
        f"{args.hold:.0f} s measured with all open; late: over {args.late_ms} ms after the provider sent it.",
        "", *SUMMARY_HEAD, *(summary_row(r) for r in results), "",
        "Lateness: from the provider's send to the client's read, every chunk sent in the window. "
        "KB per stream: web and worker RSS in the window less their idle RSS, over the streams. "
        "Gateway CPU: web, workers and Redis, in % of one core; machine CPU: both cores, 200 = saturated, "
        "other users of the machine included; the stand-in provider's and client's CPU are apart.", "",
    ]
    for result in results:
        lines += detail(result)
    publish("capacity", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
