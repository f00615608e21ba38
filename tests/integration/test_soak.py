"""A short soak (``bench.soak`` for 40 s): mixed streamed and whole requests, Chat
Completions, Messages and embeddings, through real processes at a steady 20 requests a
second, with ``/metrics`` scraped every two seconds. No errors, no process restarted, and
no gateway process's memory (web, workers, Redis) running away.

What "running away" means here, and why the bound is loose: after a 10 s warm-up, each
process's memory in the last 10 s (the median of its samples, every 2 s) must stay within
25% + 5 MB of its memory in the first 10 s. On a busy two-core machine a Python process's
RSS moves by a few MB when a stall piles requests up and the pools grow threads for them,
so a tight bound would fail on noise. Finished jobs are kept 5 s here (``result_ttl``),
so Redis holds a steady number of them within the warm-up; its per-minute rate-limit logs
still grow by design (a few hundred KB). What the bound catches is growth with traffic:
about 80 KB or more kept per request in a web or worker process (a stream's buffer, a
thread, an answer never freed), or Redis keeping 15 KB or more a request. Slower leaks are for
``python -m bench.soak --minutes 10``, whose verdict holds every process to 10%, recorded
in docs/benchmarks.md.
"""

from __future__ import annotations

from bench import soak_traffic
from bench.soak import GATEWAY, run_soak
from tests.harness import Stack
from tools.embedded_redis import free_port

WARMUP = 10.0
PERIOD = 10.0
PERIODS = 3
RATE = 20.0
RELATIVE, ABSOLUTE_MB = 0.25, 5.0


def test_a_short_soak_has_no_errors_and_no_runaway_memory(tmp_path):
    metrics_port = free_port()
    stack = Stack(tmp_path / "stack", soak_traffic.config(result_ttl="5s"), web_workers=2, web_threads=32,
                  env={"METRICS_ENABLED": "true", "METRICS_PORT": str(metrics_port)})
    try:
        stack.start()
        result = run_soak(stack, duration=PERIOD * PERIODS, warmup=WARMUP, rate=RATE, interval=PERIOD,
                          sample_every=2.0, metrics_port=metrics_port)
    finally:
        stack.stop()

    sent = sum(result.requests.values())
    assert sent == int((WARMUP + PERIOD * PERIODS) * RATE)
    assert not result.errors, dict(result.errors)
    assert not result.restarts
    answered = sum(len(v) for v in result.whole.values()) + sum(len(v) for v in result.first_byte.values())
    assert answered == sent  # every request was answered and checked, none lost in the client
    for period in range(PERIODS):  # each period saw both kinds of traffic
        assert result.whole[period] and result.first_byte[period]

    memory = result.memory_by_period()
    first, last = memory[0], memory[PERIODS - 1]
    expected = {"web master", "web worker 1", "web worker 2", "worker supervisor", "worker chat 1",
                "worker chat 2", "worker claude 1", "redis", "redis used_memory"}
    assert expected <= set(first), sorted(first)
    runaway = {label: (round(first[label], 1), round(last[label], 1)) for label in first
               if label.startswith(GATEWAY) and last[label] > first[label] * (1 + RELATIVE) + ABSOLUTE_MB}
    assert not runaway, f"memory (MB, first period -> last) grew past 25% + 5 MB: {runaway}"
