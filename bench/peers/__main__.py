"""Throughput side by side with LiteLLM's proxy: the gateway and LiteLLM against the same
sandbox provider (50 ms), each stack alone on the machine, interleaved, in rounds.

    make bench-peers                       # installs LiteLLM (.venv-peers/), then this
    python -m bench.peers --rounds 3 --duration 10
    WEB_CONCURRENCY=3 WEB_THREADS=256 WORKER_PROCESSES=3 python -m bench.peers   # other gateway defaults

Each round measures the sandbox directly, then starts one stack, measures it at each
concurrency, stops it, and does the same with the other (the order alternates from round to
round). A phase is a short warm-up at its concurrency, then ``--duration`` seconds of
closed-loop requests (bench.load) during which every process's CPU time is read from /proc:
CPU per request is each process's CPU over the requests completed. Added latency is a
stack's p50 less the direct p50 of the same round. Before the rounds, LiteLLM is started once
under strace to list every address it reaches (``bench.peers.egress``). Not a test: the
machine is shared and noisy; compare within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.peers import egress, litellm_proxy
from bench.peers.phases import Phase, measure, run_stack
from bench.peers.stacks import Gateway, GatewayLayout, LiteLLM
from bench.report import machine, publish
from tests.harness import PROVIDER_KEY, start_sandbox


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def report(phases: list[Phase], args, layout: GatewayLayout, version: str, egress_lines: list[str]) -> list[str]:
    direct = {(p.round, p.concurrency): p.load.p50_ms for p in phases if p.stack == "direct"}
    added = lambda p: p.load.p50_ms - direct[(p.round, p.concurrency)]  # noqa: E731
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        f"`python -m bench.peers --rounds {args.rounds} --duration {args.duration:g}`: sandbox provider "
        f"{args.latency_ms} ms; {args.rounds} rounds, each: direct, then the two stacks one at a time (order "
        f"alternating), {args.duration:g} s measured per concurrency after {args.warmup:g} s of warm-up.",
        f"- gateway: {layout.describe()}; GitLab identity (stand-in, cached) and three rate limits on every "
        f"request; LOG_LEVEL=warning.",
        f"- LiteLLM {version} (proxy, uvicorn, {litellm_proxy.WORKERS} workers, no database, master key; "
        f"LITELLM_LOG=WARNING, local model cost map, telemetry off).",
        *egress_lines,
        "",
        "Medians over the rounds. Added p50: the stack's p50 less the sandbox's direct p50 in the same round. "
        "CPU: ms of CPU per request, by process, over the measured requests (own: the stack's processes; "
        "the client is this load generator). Machine busy: % of one core, 200 = both cores; of which others: "
        "CPU no process of this benchmark was charged with (other users of the machine, interrupts, and the "
        "hypervisor's steal, also shown alone).",
        "",
        "| stack | concurrency | requests/s | p50 ms | added p50 ms | p99 ms | errors | CPU ms/request (own) | "
        "by process | client | sandbox | machine busy % | of which others % | steal % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for stack in ("direct", "gateway", "litellm"):
        for concurrency in args.concurrency:
            chosen = [p for p in phases if p.stack == stack and p.concurrency == concurrency]
            if not chosen:
                continue
            roles = chosen[0].cpu_ms
            by_role = ", ".join(f"{role} {median(p.cpu_ms.get(role, 0.0) for p in chosen):.2f}" for role in roles)
            lines.append(
                f"| {stack} | {concurrency} | {median(p.load.rps for p in chosen):.0f} | "
                f"{median(p.load.p50_ms for p in chosen):.2f} | "
                f"{'' if stack == 'direct' else f'{median(added(p) for p in chosen):.2f}'} | "
                f"{median(p.load.p99_ms for p in chosen):.2f} | {sum(p.load.errors for p in chosen)} | "
                f"{'' if stack == 'direct' else f'{median(p.own_ms for p in chosen):.2f}'} | {by_role or ''} | "
                f"{median(p.client_ms for p in chosen):.2f} | {median(p.sandbox_ms for p in chosen):.2f} | "
                f"{median(p.machine_busy for p in chosen):.0f} | {median(p.others_busy for p in chosen):.0f} | "
                f"{median(p.steal for p in chosen):.0f} |")
    top = max(args.concurrency)
    gateway = [p.load.rps for p in phases if p.stack == "gateway" and p.concurrency == top]
    litellm = [p.load.rps for p in phases if p.stack == "litellm" and p.concurrency == top]
    if gateway and litellm:
        lines += ["", f"At concurrency {top}: gateway {median(gateway):.0f} requests/s, LiteLLM {median(litellm):.0f}: "
                      f"**{median(gateway) / median(litellm):.2f}x** (target: at least 3x)."]
        # Both stacks saturate the machine at this concurrency, so requests/s follow CPU per request;
        # this ratio does not depend on how much of the machine other users took during each phase.
        all_in = {stack: median(p.own_ms + p.client_ms + p.sandbox_ms for p in phases
                                if p.stack == stack and p.concurrency == top) for stack in ("gateway", "litellm")}
        lines.append(f"CPU per request, the stack's processes with the client and the sandbox: gateway "
                     f"{all_in['gateway']:.2f} ms, LiteLLM {all_in['litellm']:.2f} ms: on a machine of their own, "
                     f"about {all_in['litellm'] / all_in['gateway']:.2f}x.")
    lines += ["", "Every round:", "",
              "| round | stack | concurrency | requests/s | p50 ms | added p50 ms | p99 ms | errors | "
              "CPU ms/request (own) | client | machine busy % | of which others % | steal % |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in phases:
        lines.append(f"| {p.round} | {p.stack} | {p.concurrency} | {p.load.rps:.0f} | {p.load.p50_ms:.2f} | "
                     f"{'' if p.stack == 'direct' else f'{added(p):.2f}'} | {p.load.p99_ms:.2f} | {p.load.errors} | "
                     f"{'' if p.stack == 'direct' else f'{p.own_ms:.2f}'} | {p.client_ms:.2f} | "
                     f"{p.machine_busy:.0f} | {p.others_busy:.0f} | {p.steal:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per concurrency")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each measurement")
    parser.add_argument("--concurrency", default="1,50")
    parser.add_argument("--latency-ms", type=int, default=50, help="sandbox provider latency")
    parser.add_argument("--stacks", default="gateway,litellm", help="which stacks, of gateway and litellm")
    parser.add_argument("--no-egress-check", action="store_true", help="skip starting LiteLLM under strace")
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    wanted = args.stacks.split(",")
    if "litellm" in wanted and not litellm_proxy.installed():
        raise SystemExit(f"LiteLLM is not installed in {litellm_proxy.VENV}: run `make bench-peers`")
    layout = GatewayLayout.defaults()
    version = litellm_proxy.version() if "litellm" in wanted else "(not run)"

    directory = Path(tempfile.mkdtemp(prefix="aigw-bench-peers-"))
    sandbox, sandbox_url = start_sandbox(directory, dict(os.environ), latency_ms=args.latency_ms)
    phases: list[Phase] = []
    try:
        egress_lines = []
        if "litellm" in wanted and not args.no_egress_check:
            egress_lines = egress.check(directory / "egress", sandbox_url, PROVIDER_KEY)
            print("\n".join(egress_lines), flush=True)
        for round_number in range(1, args.rounds + 1):
            direct_url = f"{sandbox_url}/v1/chat/completions"
            for concurrency in args.concurrency:
                phases.append(measure("direct", round_number, direct_url, PROVIDER_KEY, concurrency, args, {},
                                      sandbox.pid))
            order = wanted if round_number % 2 else list(reversed(wanted))
            for name in order:
                where = directory / f"round{round_number}-{name}"
                stack = (Gateway(where, sandbox_url, layout) if name == "gateway"
                         else LiteLLM(where, sandbox_url, PROVIDER_KEY))
                phases += run_stack(stack, round_number, args, sandbox.pid)
    finally:
        sandbox.stop()
    publish("peers", report(phases, args, layout, version, egress_lines))
    shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
