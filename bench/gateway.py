"""Gateway overhead: the sandbox provider called directly vs through the gateway,
side by side in one run, on the same machine.

    make bench            # or: python -m bench.gateway --duration 10 --workers 8

Prints a markdown table (and writes it to bench/results/). Not a test: these
machines are shared and noisy, so compare the two paths within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.load import LoadResult, run_load
from bench.processes import rss_mb
from bench.report import machine, publish
from sandbox.gitlab import DEMO_TOKEN
from shared.ratelimit import DAY, MINUTE, REQUESTS, TOKENS, Limit, RateLimiter
from tests.harness import PROVIDER_KEY, Stack

CONFIG = """
models:
  - name: bench
    type: generic
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 60s
    workers: {workers}
    max_queue_depth: 100000
    # Limits that never refuse, so every request pays for the check and the settlement.
    rate_limit: {{requests_per_minute: 100000000, tokens_per_minute: 1000000000, requests_per_day: 1000000000}}
"""
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16}
CODE_LINE = "    return total + item.price * item.quantity  # a line of the code being edited\n"


def body_with_prompt(size: int) -> dict:
    """BODY, or a request whose prompt is ``size`` bytes of code, as a code assistant sends."""
    if not size:
        return BODY
    code = (CODE_LINE * (size // len(CODE_LINE) + 1))[:size]
    return {**BODY, "messages": [{"role": "system", "content": "You complete code."},
                                 {"role": "user", "content": code}]}


def commands_executed(client: redis.Redis) -> int:
    """Every command Redis has executed: ``INFO commandstats``, which counts each call made
    inside a script or a transaction (``total_commands_processed`` counts a script as one)."""
    return sum(stats["calls"] for stats in client.info("commandstats").values())


def round_trips_taken(client: redis.Redis) -> int:
    """Every round trip clients have made to Redis: ``total_reads_processed``, one read of a
    client's socket by Redis, which takes a command or a whole pipeline sent at once."""
    return client.info("stats")["total_reads_processed"]


@dataclass(frozen=True)
class RedisCost:
    commands: float  # per request, every command executed (inside scripts and transactions too)
    round_trips: float  # per request, every read of a client's socket


def redis_cost_per_request(stack: Stack, count: int = 1000) -> RedisCost:
    """What one non-streaming request at concurrency 1 costs Redis, the stack's background
    work (heartbeats, maintenance, the monitor's looks) included: every command Redis
    executed and every round trip made to it while ``count`` requests ran one after another,
    divided by ``count``. The caller's identity is cached already (the warm-up)."""
    import requests

    client = redis.Redis.from_url(stack.redis_server.url)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    for _ in range(10):  # the identity cached, the connections open
        session.post(f"{stack.url}/v1/chat/completions", json=BODY, timeout=30, headers=headers).raise_for_status()
    commands, round_trips = commands_executed(client), round_trips_taken(client)
    for _ in range(count):
        session.post(f"{stack.url}/v1/chat/completions", json=BODY, timeout=30, headers=headers).raise_for_status()
    # Less this count's own: one INFO (commands) and two (round trips) before the requests' last.
    return RedisCost((commands_executed(client) - commands - 2) / count,
                     (round_trips_taken(client) - round_trips - 2) / count)


def limiter_cost(stack: Stack, count: int = 2000) -> tuple[float, float]:
    """Median microseconds of one admission (3 limits) and one token reconciliation."""
    limiter = RateLimiter(redis.Redis.from_url(stack.redis_server.url))
    limits = [Limit("bench:model", "m", REQUESTS, MINUTE, 10**9), Limit("bench:route", "r", TOKENS, MINUTE, 10**12),
              Limit("bench:user", "u", REQUESTS, DAY, 10**9)]
    admit, settle = [], []
    for _ in range(count):
        started = time.perf_counter()
        reservation = limiter.admit(limits, 500)
        admitted = time.perf_counter()
        limiter.reconcile(reservation, 300)
        settle.append(time.perf_counter() - admitted)
        admit.append(admitted - started)
    return statistics.median(admit) * 1e6, statistics.median(settle) * 1e6


def row(result: LoadResult) -> str:
    return (f"| {result.label} | {result.concurrency} | {result.rps:.0f} | {result.p50_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.errors} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=50, help="sandbox provider latency")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the model (16 jobs each)")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=64)
    parser.add_argument("--prompt-bytes", type=int, default=0, help="send a prompt this large (default: a short one)")
    args = parser.parse_args(argv)
    body = body_with_prompt(args.prompt_bytes)

    directory = Path(tempfile.mkdtemp(prefix="aigw-bench-"))
    stack = Stack(directory, CONFIG.format(workers=args.workers), web_workers=args.web_workers,
                  web_threads=args.web_threads, sandbox_latency_ms=args.latency_ms,
                  env={"LOG_LEVEL": "warning"})
    lines = []
    try:
        stack.start()
        direct_url = f"{stack.sandbox_url}/v1/chat/completions"
        gateway_url = f"{stack.url}/v1/chat/completions"
        results: dict[tuple[str, int], LoadResult] = {}
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            # Each side gets its own credential: the provider's key, or a GitLab token.
            for label, url, token in (("direct", direct_url, PROVIDER_KEY), ("gateway", gateway_url, DEMO_TOKEN)):
                results[(label, concurrency)] = run_load(
                    label, url, body, concurrency=concurrency, duration=args.duration,
                    headers={"Authorization": f"Bearer {token}"})
        cost = redis_cost_per_request(stack)
        admit_us, settle_us = limiter_cost(stack)
        memory = {
            "web (gunicorn master + workers)": rss_mb(stack.web.pid),
            f"workers (supervisor + {args.workers} processes)": rss_mb(stack.workers.pid),
            "redis": rss_mb(stack.redis_server.process.pid),
        }

        lines += [
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
            f"Sandbox provider latency {args.latency_ms} ms; gunicorn {args.web_workers} x "
            f"{args.web_threads} threads; {args.workers} worker processes x 16 jobs; "
            f"{args.duration:.0f} s per phase; "
            f"{f'a {args.prompt_bytes}-byte prompt' if args.prompt_bytes else 'a short prompt'}.",
            "",
            "| path | concurrency | requests/s | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
        ]
        lines += [row(result) for result in results.values()]
        lines.append("")
        for concurrency in sorted({c for _, c in results}):
            direct, gateway = results[("direct", concurrency)], results[("gateway", concurrency)]
            lines.append(
                f"- concurrency {concurrency}: gateway adds {gateway.p50_ms - direct.p50_ms:.2f} ms at p50 "
                f"(ratio {gateway.p50_ms / direct.p50_ms:.3f}); throughput ratio "
                f"{gateway.rps / direct.rps:.3f}")
        lines.append(f"- Redis per gateway request: {cost.commands:.1f} commands in {cost.round_trips:.1f} round trips")
        lines.append(f"- Rate limiting (3 limits on every request above): one round trip to admit, median "
                     f"{admit_us:.0f} µs; one to reconcile tokens (in the worker), median {settle_us:.0f} µs")
        lines += ["", "| process | RSS MB |", "|---|---|"]
        lines += [f"| {name} | {mb:.0f} |" for name, mb in memory.items()]
    finally:
        stack.stop()
    publish("gateway", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
