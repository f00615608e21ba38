"""One stack's measurement at one concurrency (a phase): a warm-up, then closed-loop
requests (bench.load) while every process's CPU time, this load generator's and the
machine's are read, so CPU per request is each process's CPU over the requests completed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from bench.gateway import BODY
from bench.load import LoadResult, run_load
from bench.peers.stacks import EXTERNAL, role_cpu


@dataclass
class Phase:
    stack: str
    round: int
    concurrency: int
    load: LoadResult
    cpu_ms: dict[str, float] = field(default_factory=dict)  # role -> CPU ms per request
    client_ms: float = 0.0
    sandbox_ms: float = 0.0
    machine_busy: float = 0.0  # % of one core, both cores: 200
    others_busy: float = 0.0  # of which no process of this benchmark's: other users, interrupts
    steal: float = 0.0  # of which the hypervisor gave to other guests (counted busy, inside others_busy)

    @property
    def own_ms(self) -> float:
        return sum(ms for role, ms in self.cpu_ms.items() if role not in EXTERNAL)


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, total, steal) jiffies of every CPU since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values), values[7]  # less idle and iowait; steal


def measure(stack: str, round_number: int, url: str, token: str, concurrency: int, args,
            roles: dict[str, list[int]], sandbox_pid: int) -> Phase:
    headers = {"Authorization": f"Bearer {token}"}
    run_load("warm-up", url, BODY, concurrency=concurrency, duration=args.warmup, headers=headers, warmup=0)
    roles = {**roles, "_sandbox": [sandbox_pid]}
    before, client_before, busy_before, began = role_cpu(roles), os.times(), machine_jiffies(), time.monotonic()
    # No warm-up inside: every request counted is one the CPU readings cover.
    load = run_load(stack, url, BODY, concurrency=concurrency, duration=args.duration, headers=headers, warmup=0)
    after, client_after, busy_after, ended = role_cpu(roles), os.times(), machine_jiffies(), time.monotonic()
    count = max(1, len(load.latencies))
    used = {role: after[role] - before[role] for role in roles}
    client = client_after.user + client_after.system - client_before.user - client_before.system
    cores = len(os.sched_getaffinity(0)) / max(1, busy_after[1] - busy_before[1])
    busy, steal = (busy_after[0] - busy_before[0]) * cores, (busy_after[2] - busy_before[2]) * cores
    ours = (sum(used.values()) + client) / (ended - began)
    return Phase(stack, round_number, concurrency, load,
                 cpu_ms={role: used[role] / count * 1000 for role in roles if role != "_sandbox"},
                 client_ms=client / count * 1000, sandbox_ms=used["_sandbox"] / count * 1000,
                 machine_busy=busy * 100, others_busy=max(0.0, busy - ours) * 100, steal=steal * 100)


def run_stack(stack, round_number: int, args, sandbox_pid: int) -> list[Phase]:
    started = time.monotonic()
    stack.start()
    print(f"round {round_number}: {stack.label} ready in {time.monotonic() - started:.0f} s", flush=True)
    try:
        phases = []
        for concurrency in args.concurrency:
            phase = measure(stack.label, round_number, stack.url, stack.token, concurrency, args,
                            stack.processes(), sandbox_pid)
            print(f"round {round_number}: {stack.label} c={concurrency}: {phase.load.rps:.0f} requests/s, "
                  f"p50 {phase.load.p50_ms:.2f} ms, {phase.own_ms:.2f} ms CPU/request, "
                  f"{phase.load.errors} errors", flush=True)
            phases.append(phase)
        return phases
    finally:
        stack.stop()
