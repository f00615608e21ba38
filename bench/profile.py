"""Where the gateway's CPU goes under load: py-spy samples every web and worker process while
closed-loop clients keep ``--concurrency`` requests in flight, and Redis reports its own
time per command.

    python -m bench.profile                          # the defaults, concurrency 50, 20 s
    WEB_THREADS=256 python -m bench.profile --concurrency 50 --seconds 30

Needs py-spy (``pip install py-spy``; not a project dependency): on PATH or in .venv.
The gateway is set up as ``bench.peers`` runs it (its defaults, identity, three limits, a
50 ms sandbox provider). py-spy samples without pausing the processes (``--nonblocking``)
and keeps only the samples of the thread holding the GIL (``--gil``): a function's share
of a process's samples is its share of the Python time there (time in C with the GIL
released, a socket's send or receive, is not sampled; a thread waiting is never counted).
"GIL held" is the fraction of the window some thread of the process held it: near 100%
means the process cannot do more, whatever its threads. py-spy runs on the same two cores,
so throughput during the profile is a little lower than without it. Each role's CPU per
request is read from /proc over the same window. Not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import redis

from bench.gateway import BODY
from bench.load import run_load
from bench.peers.stacks import Gateway, GatewayLayout, role_cpu
from bench.report import machine, publish
from tests.harness import ROOT, start_sandbox

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
PROJECT = ("api/", "shared/", "workers/")
# Where a frame's file lives, for the by-library summary (py-spy shortens paths to the package part).
LIBRARIES = [("rq/", "rq"), ("redis/", "redis-py"), ("hiredis", "redis-py"), ("requests/", "requests"),
             ("urllib3/", "urllib3"), ("falcon/", "falcon"), ("gunicorn/", "gunicorn"),
             ("tenacity/", "tenacity"), ("prometheus_client/", "prometheus-client"), ("orjson", "orjson")]


def py_spy() -> str:
    found = shutil.which("py-spy") or (ROOT / ".venv" / "bin" / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is needed: `pip install py-spy` (into .venv or anywhere on PATH)")
    return str(found)


def parse_frame(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip(), ""
    return match.group("function"), match.group("file")


def library(file: str) -> str:
    if file.startswith(PROJECT):
        return file.split("/", 1)[0] + "/ (the gateway)"
    for prefix, name in LIBRARIES:
        if prefix in file:
            return name
    if "/" not in file or file.startswith(("<", "concurrent/", "json/", "email/", "http/", "logging/")):
        return "standard library"
    return file.split("/", 1)[0]


def aggregate(raw_files: list[Path]) -> tuple[int, Counter, Counter, Counter]:
    """Samples; self samples by file:function; inclusive samples by file:function; self by library."""
    total, own, inclusive, libraries = 0, Counter(), Counter(), Counter()
    for path in raw_files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            frames = [parse_frame(f) for f in stack.split(";") if f and not f.startswith("process ")
                      and not f.startswith("thread ")]
            if not frames:
                continue
            total += samples
            function, file = frames[-1]
            own[f"{file}:{function}"] += samples
            libraries[library(file)] += samples
            for name in {f"{file}:{function}" for function, file in frames}:
                inclusive[name] += samples
    return total, own, inclusive, libraries


def table(title: str, counter: Counter, total: int, ms_per_request: float, top: int) -> list[str]:
    lines = [title, "", "| where | % of samples | CPU ms/request |", "|---|---|---|"]
    for name, samples in counter.most_common(top):
        share = samples / total if total else 0.0
        lines.append(f"| `{name}` | {share * 100:.1f} | {share * ms_per_request:.3f} |")
    return lines + [""]


def redis_time(before: dict, after: dict, requests: int) -> list[str]:
    lines = ["Redis, by command (INFO commandstats over the window). Commands run by a script (EVALSHA) or a "
             "transaction (EXEC) are counted on their own too, and their time is also inside the script's or "
             "the transaction's: the µs do not add up.", "",
             "| command | calls/request | µs/request | µs/call |", "|---|---|---|---|"]
    rows = []
    for name, stats in after.items():
        calls = stats["calls"] - before.get(name, {}).get("calls", 0)
        usec = stats["usec"] - before.get(name, {}).get("usec", 0)
        if calls:
            rows.append((usec, name, calls))
    for usec, name, calls in sorted(rows, reverse=True):
        lines.append(f"| {name} | {calls / requests:.2f} | {usec / requests:.1f} | {usec / calls:.1f} |")
    lines.append(f"| all | {sum(calls for _, _, calls in rows) / requests:.1f} | | |")
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds profiled")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second per process")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    spy = py_spy()
    layout = GatewayLayout.defaults()
    directory = Path(tempfile.mkdtemp(prefix="aigw-bench-profile-"))
    sandbox, sandbox_url = start_sandbox(directory, dict(os.environ), latency_ms=args.latency_ms)
    gateway = Gateway(directory / "gateway", sandbox_url, layout)
    try:
        gateway.start()
        roles = gateway.processes()
        client = redis.Redis.from_url(gateway.stack.redis_server.url)
        headers = {"Authorization": f"Bearer {gateway.token}"}
        run_load("warm-up", gateway.url, BODY, concurrency=args.concurrency, duration=3, headers=headers, warmup=0)
        results = {}
        load = threading.Thread(target=lambda: results.update(load=run_load(
            "gateway", gateway.url, BODY, concurrency=args.concurrency, duration=args.seconds + 4,
            headers=headers, warmup=0)))
        load.start()
        time.sleep(2)  # the clients are all sending before the window opens
        spies = {}
        for role in ("web workers", "worker processes"):
            for pid in roles[role]:
                output = directory / f"{role.replace(' ', '-')}-{pid}.txt"
                spies[(role, output)] = subprocess.Popen(
                    [spy, "record", "--pid", str(pid), "--duration", str(int(args.seconds)), "--rate", str(args.rate),
                     "--format", "raw", "--nonblocking", "--gil", "--output", str(output)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        commands_before, cpu_before, began = client.info("commandstats"), role_cpu(roles), time.monotonic()
        for process in spies.values():
            process.wait(timeout=args.seconds + 60)
        elapsed = time.monotonic() - began
        commands_after, cpu_after = client.info("commandstats"), role_cpu(roles)
        load.join()
    finally:
        gateway.stop()
        sandbox.stop()
    result = results["load"]
    requests = max(1, round(result.rps * elapsed))  # the load is steady through the window
    cpu_ms = {role: (cpu_after[role] - cpu_before[role]) / requests * 1000 for role in roles}
    lines = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
             f"`python -m bench.profile --concurrency {args.concurrency} --seconds {args.seconds:g}`: "
             f"{layout.describe()}; identity and three limits; sandbox {args.latency_ms} ms; py-spy at "
             f"{args.rate} Hz on every web and worker process.",
             f"- {result.rps:.0f} requests/s during the profile, p50 {result.p50_ms:.1f} ms, {result.errors} errors.",
             "- CPU ms per request over the window: " + ", ".join(f"{role} {ms:.2f}" for role, ms in cpu_ms.items())
             + f" (total {sum(cpu_ms.values()):.2f}).", ""]
    for role in ("web workers", "worker processes"):
        files = [path for (each, path) in spies if each == role and path.exists()]
        total, own, inclusive, libraries = aggregate(files)
        held = total / (len(files) * args.rate * args.seconds) * 100 if files else 0.0
        lines += [f"### {role} ({len(files)} processes, {total} samples; GIL held {held:.0f}% of the window, "
                  f"per process on average)", ""]
        lines += table("By library (self time):", libraries, total, cpu_ms[role], args.top)
        lines += table("Self time by function:", own, total, cpu_ms[role], args.top)
        lines += table("Inclusive time by function:", inclusive, total, cpu_ms[role], args.top)
        lines += table("Inclusive time, the gateway's own functions:",
                       Counter({name: n for name, n in inclusive.items() if name.startswith(PROJECT)}),
                       total, cpu_ms[role], args.top)
    lines += redis_time(commands_before, commands_after, requests)
    publish("profile", lines)
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
