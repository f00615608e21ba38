"""Soak: mixed streaming and whole requests at a steady rate for a set time, watching for
errors, latency drift and memory growth in every process.

    python -m bench.soak --minutes 10            # the run recorded in docs/benchmarks.md
    python -m bench.soak --minutes 3 --rate 10

Traffic (bench.soak_traffic): Chat Completions and Messages, streamed and whole, to an
OpenAI and an Anthropic model (pass-through and translated), embeddings, some naming a
project; sent open-loop at ``--rate`` requests a second, whatever the answers' pace, and
timed from when each was due. ``/metrics`` is scraped every sample too.

Warm-up: the same traffic runs ``--warmup`` seconds (default 60) before minute 1, which is
when everything with a lifetime reaches its steady size: finished jobs kept for
``result_ttl`` (60 s), per-minute rate-limit logs, GitLab answers cached for ``cache_ttl``
(60 s), and the thread and connection pools. Warm-up errors still count.

Memory: every process's RSS (and Redis's ``used_memory``) is sampled every
``--sample-every`` seconds; a minute's figure is the median of its samples. Verdict:
no errors, no process restarted, and every gateway process's memory (web, workers, Redis;
the stand-ins are only reported) in the last minute within ``--tolerance`` (10%) of minute 1.
"""

from __future__ import annotations

import argparse
import http.client
import queue
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench import soak_traffic
from bench.processes import sample, stack_processes
from bench.report import machine, publish
from tests.harness import Stack
from tools.embedded_redis import free_port

CLIENT_THREADS = 64  # far more than the rate needs, so a request never waits for the client
# The verdict's processes: the gateway's own. The stand-ins are reported, not judged: the
# sandbox provider counts attempts per request key (up to 100,000 keys), growth by design.
GATEWAY = ("web", "worker", "redis")


@dataclass
class SoakResult:
    interval: float  # seconds per reported period ("minute")
    rate: float
    requests: Counter = field(default_factory=Counter)  # period -> requests sent
    errors: Counter = field(default_factory=Counter)  # problem -> count (warm-up and metrics included)
    errors_by_period: Counter = field(default_factory=Counter)
    whole: dict = field(default_factory=lambda: defaultdict(list))  # period -> seconds, whole answers
    first_byte: dict = field(default_factory=lambda: defaultdict(list))  # period -> seconds, streams
    memory: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))  # period -> label -> MB
    restarts: list = field(default_factory=list)
    periods: int = 0

    def memory_by_period(self) -> dict[int, dict[str, float]]:
        return {period: {label: statistics.median(values) for label, values in labels.items()}
                for period, labels in sorted(self.memory.items()) if 0 <= period < self.periods}

    def growth(self) -> dict[str, float]:
        """Each process's memory in the last period against the first, as a fraction (0.05: 5% more)."""
        by_period = self.memory_by_period()
        if not by_period:
            return {}
        first, last = by_period[min(by_period)], by_period[max(by_period)]
        return {label: last[label] / first[label] - 1 for label in first if label in last and first[label]}


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if not values:
        return (float("nan"),) * 3
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return pick(0.50) * 1000, pick(0.95) * 1000, pick(0.99) * 1000


def run_soak(stack: Stack, *, duration: float, warmup: float, rate: float, interval: float = 60.0,
             sample_every: float = 10.0, metrics_port: int | None = None, seed: int = 13) -> SoakResult:
    """Drive ``stack`` for ``warmup`` + ``duration`` seconds; periods of ``interval`` seconds
    are numbered from 0 once the warm-up is over (warm-up: negative)."""
    result = SoakResult(interval=interval, rate=rate, periods=int(round(duration / interval)))
    kinds = [kind for kind, _ in soak_traffic.MIX]
    weights = [weight for _, weight in soak_traffic.MIX]
    picker = random.Random(seed)
    lock = threading.Lock()
    work: queue.Queue = queue.Queue()
    begin = time.monotonic()
    measure_from = begin + warmup
    stop_at = measure_from + duration

    def period_of(moment: float) -> int:
        return int((moment - measure_from) // interval) if moment >= measure_from else -1

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
        while (item := work.get()) is not None:
            number, kind, scheduled = item
            try:
                outcome = soak_traffic.send(connection, kind, number, scheduled)
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
                outcome = soak_traffic.Outcome(False, f"client: {type(error).__name__}", 0.0, 0.0)
            period = period_of(scheduled)
            with lock:
                if not outcome.ok:
                    result.errors[f"{kind.name}: {outcome.problem}"] += 1
                    result.errors_by_period[period] += 1
                elif kind.stream:
                    result.first_byte[period].append(outcome.first_byte)
                else:
                    result.whole[period].append(outcome.done)
        connection.close()

    def sampler(stop: threading.Event) -> None:
        redis = stack.redis()
        known = stack_processes(stack, redis)
        while not stop.wait(sample_every):
            now = time.monotonic()
            found = stack_processes(stack, redis)
            for label, pid in found.items():
                if known.get(label, pid) != pid:
                    result.restarts.append(f"{label} (pid {known[label]} -> {pid})")
                    known[label] = pid
            period = period_of(now)
            values = {label: each["rss_mb"] for label, each in sample(found).items()}
            try:
                values["redis used_memory"] = redis.info("memory")["used_memory"] / 2**20
            except Exception as error:  # a soak reports what failed; it does not stop
                result.errors[f"redis INFO: {type(error).__name__}"] += 1
            with lock:
                for label, mb in values.items():
                    result.memory[period][label].append(mb)
            if metrics_port:
                problem = scrape(metrics_port)
                if problem:
                    with lock:
                        result.errors[f"/metrics: {problem}"] += 1
                        result.errors_by_period[period] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    stop = threading.Event()
    watcher = threading.Thread(target=sampler, args=(stop,), daemon=True)
    watcher.start()
    number = 0
    while (due := begin + number / rate) < stop_at:
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        kind = picker.choices(kinds, weights)[0]
        with lock:
            result.requests[period_of(due)] += 1
        work.put((number, kind, due))
        number += 1
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join(120)
    stop.set()
    watcher.join(30)
    return result


def scrape(port: int) -> str | None:
    """What is wrong with the metrics endpoint, or None."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return f"{response.status}"
        return None if b"aigw_requests_total" in body else "no aigw_requests_total"
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__
    finally:
        connection.close()


def verdict(result: SoakResult, tolerance: float) -> tuple[bool, list[str]]:
    reasons = []
    if result.errors:
        reasons.append(f"{sum(result.errors.values())} errors")
    if result.restarts:
        reasons.append("restarted: " + ", ".join(result.restarts))
    for label, change in result.growth().items():
        if label.startswith(GATEWAY) and abs(change) > tolerance:
            reasons.append(f"{label} memory {change:+.1%} from the first period to the last")
    return not reasons, reasons


def report(result: SoakResult, tolerance: float) -> list[str]:
    unit = "minute" if result.interval == 60 else f"{result.interval:.0f} s period"
    lines = [f"| {unit} | requests | errors | whole p50 ms | p95 | p99 | stream first byte p50 ms | p95 | p99 |",
             "|---|---|---|---|---|---|---|---|---|"]
    if result.requests.get(-1):
        lines.append(f"| warm-up | {result.requests[-1]} | {result.errors_by_period[-1]} | "
                     + " | ".join(f"{v:.0f}" for v in (*percentiles(result.whole[-1]),
                                                         *percentiles(result.first_byte[-1]))) + " |")
    for period in range(result.periods):
        lines.append(f"| {period + 1} | {result.requests[period]} | {result.errors_by_period[period]} | "
                     + " | ".join(f"{v:.0f}" for v in (*percentiles(result.whole[period]),
                                                         *percentiles(result.first_byte[period]))) + " |")
    by_period = result.memory_by_period()
    labels = list(by_period[min(by_period)]) if by_period else []
    lines += ["", f"Memory, MB (RSS; Redis also `used_memory`), median of each {unit}'s samples:", "",
              f"| {unit} | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for period, values in by_period.items():
        lines.append(f"| {period + 1} | " + " | ".join(f"{values.get(label, float('nan')):.1f}" for label in labels)
                     + " |")
    growth = result.growth()
    lines.append("| change, last vs first | " + " | ".join(f"{growth.get(label, float('nan')):+.1%}"
                                                          for label in labels) + " |")
    passed, reasons = verdict(result, tolerance)
    lines += ["", "Errors: " + ("none" if not result.errors else
                                 "; ".join(f"{n} x {p}" for p, n in result.errors.most_common())),
              f"Verdict: **{'PASS' if passed else 'FAIL'}**" + ("" if passed else " (" + "; ".join(reasons) + ")")
              + f": errors = 0, no restarts, every gateway process (web, workers, Redis) within {tolerance:.0%} "
              f"of its first-{unit} memory; the stand-ins (sandbox, gitlab) are shown, not judged."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="measured time, after the warm-up")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of the same traffic before minute 1")
    parser.add_argument("--rate", type=float, default=20.0, help="requests a second")
    parser.add_argument("--period", type=float, default=60.0, help="seconds per reported period")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--tolerance", type=float, default=0.10, help="memory change allowed, last minute vs first")
    parser.add_argument("--web-concurrency", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=64)
    parser.add_argument("--log-level", default="info", help="the gateway's LOG_LEVEL (info: the default)")
    args = parser.parse_args(argv)

    metrics_port = free_port()
    stack = Stack(Path(tempfile.mkdtemp(prefix="aigw-bench-soak-")), soak_traffic.config(),
                  web_workers=args.web_concurrency, web_threads=args.web_threads,
                  env={"LOG_LEVEL": args.log_level, "METRICS_ENABLED": "true", "METRICS_PORT": str(metrics_port)})
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        stack.start()
        result = run_soak(stack, duration=args.minutes * 60, warmup=args.warmup, rate=args.rate,
                          interval=args.period, sample_every=args.sample_every, metrics_port=metrics_port)
    finally:
        stack.stop()
    mix = ", ".join(f"{kind.name} {weight}" for kind, weight in soak_traffic.MIX)
    lines = [
        f"Run {started} on {machine()}; {stack.dir}.",
        f"`python -m bench.soak --minutes {args.minutes:g}`: {args.rate:g} requests/s open-loop for "
        f"{args.minutes:g} minutes after a {args.warmup:.0f} s warm-up; gunicorn {args.web_concurrency} x "
        f"{args.web_threads} threads; LOG_LEVEL={args.log_level}; /metrics scraped every {args.sample_every:g} s. "
        f"Mix (weights): {mix}. Whole answers take {soak_traffic.WHOLE_DELAY_MS} ms at the provider; streams "
        f"{soak_traffic.STREAM_WORDS} words {soak_traffic.STREAM_CHUNK_MS} ms apart.",
        "", *report(result, args.tolerance)]
    publish("soak", lines)
    passed, _ = verdict(result, args.tolerance)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
