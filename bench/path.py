"""Where a request's time goes along the path, at concurrency 1: median time of each
step from the client's send, with the provider answering at once and after 50 ms.

    python -m bench.path [--requests 300]

Timestamps come from bench/path_hooks (loaded into the gateway's processes only
here). Comparing the two columns shows what idle time costs on this machine:
after a wait, every step runs slower. Not a test: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.gateway import BODY, CONFIG
from bench.load import run_load
from bench.report import machine, publish
from sandbox.gitlab import DEMO_TOKEN
from tests.harness import PROVIDER_KEY, Stack

HOOKS = Path(__file__).parent / "path_hooks"
STEPS = ["web_in", "enqueue_begin", "enqueue_sent", "wait_begin", "dequeued", "job_thread", "job_starts",
         "upstream_sent", "upstream_answered", "answer_built", "woke", "web_out", "client_received"]


def traced(latency_ms: int, count: int) -> tuple[dict[str, float], float, float]:
    """Median ms from the client's send to each step; gateway and direct p50 ms."""
    marks_dir = Path(tempfile.mkdtemp(prefix="aigw-path-"))
    env = {"LOG_LEVEL": "warning", "BENCH_PATH_DIR": str(marks_dir), "PYTHONPATH": f"{HOOKS}:{HOOKS.parent.parent}"}
    stack = Stack(Path(tempfile.mkdtemp(prefix="aigw-bench-")), CONFIG.format(workers=1), web_workers=1,
                  sandbox_latency_ms=latency_ms, env=env)
    sends: list[tuple[float, float]] = []
    try:
        stack.start()
        connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        payload = json.dumps(BODY).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {DEMO_TOKEN}"}
        for index in range(count + 30):
            began = time.time()
            connection.request("POST", "/v1/chat/completions", body=payload, headers=headers)
            connection.getresponse().read()
            if index >= 30:  # warm-up
                sends.append((began, time.time()))
        direct = run_load("direct", f"{stack.sandbox_url}/v1/chat/completions", BODY, concurrency=1,
                          duration=count * (latency_ms + 1) / 2000, headers={"Authorization": f"Bearer {PROVIDER_KEY}"})
        time.sleep(1.0)  # the hooks write their marks every 0.5 s
    finally:
        stack.stop()
    by_job: dict[str, dict[str, float]] = defaultdict(dict)
    for path in marks_dir.glob("*.marks"):
        for line in path.read_text().splitlines():
            at, label, job_id = line.split()
            by_job[job_id][label] = float(at)
    jobs = sorted((marks["web_in"], marks) for marks in by_job.values() if "web_in" in marks)
    offsets: dict[str, list[float]] = defaultdict(list)
    position = 0
    for began, received in sends:
        while position < len(jobs) and jobs[position][0] < began:
            position += 1
        if position == len(jobs):
            break
        marks = {**jobs[position][1], "client_received": received}
        for step in STEPS:
            if step in marks:
                offsets[step].append((marks[step] - began) * 1000)
    medians = {step: statistics.median(values) for step, values in offsets.items()}
    return medians, statistics.median(b - a for a, b in sends) * 1000, direct.p50_ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    results = {latency: traced(latency, args.requests) for latency in (0, 50)}
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
             f"1 gunicorn worker, 1 worker process, {args.requests} sequential requests per column; "
             "ms from the client's send, medians.", "",
             "| step | upstream 0 ms: at | step took | upstream 50 ms: at | step took | ratio |",
             "|---|---|---|---|---|---|"]
    previous = {0: 0.0, 50: 0.0}
    for step in STEPS:
        cells, took = [], {}
        for latency in (0, 50):
            at = results[latency][0].get(step, float("nan"))
            took[latency] = at - previous[latency]
            previous[latency] = at
            cells += [f"{at:.2f}", f"{took[latency]:.2f}"]
        ratio = took[50] / took[0] if step != "upstream_answered" and took[0] > 0 else float("nan")
        lines.append(f"| {step} | {' | '.join(cells)} | {ratio:.2f} |")
    lines.append("")
    for latency in (0, 50):
        _medians, gateway, direct = results[latency]
        lines.append(f"- upstream {latency} ms: gateway p50 {gateway:.2f} ms, direct p50 {direct:.2f} ms, "
                     f"added {gateway - direct:.2f} ms")
    publish("path", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
