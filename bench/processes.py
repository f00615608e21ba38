"""Resident memory of a process tree, read from /proc (Linux)."""

from __future__ import annotations

import os
import socket


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 of stat: the parent pid
            found.append(int(entry))
    return found


def tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(children(current))
    return pids


def rss_mb(pid: int) -> float:
    """Total resident set size of ``pid`` and all its descendants, in MB."""
    total_kb = 0
    for each in tree(pid):
        try:
            with open(f"/proc/{each}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) that ``pid`` itself has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def status(pid: int) -> dict:
    """``pid``'s own resident memory (MB), threads, open descriptors and CPU seconds so far."""
    found = {"rss_mb": 0.0, "threads": 0}
    with open(f"/proc/{pid}/status") as lines:
        for line in lines:
            if line.startswith("VmRSS:"):
                found["rss_mb"] = int(line.split()[1]) / 1024
            elif line.startswith("Threads:"):
                found["threads"] = int(line.split()[1])
    try:
        found["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        found["fds"] = -1
    found["cpu_s"] = cpu_seconds(pid)
    return found


def stack_processes(stack, redis_client=None) -> dict[str, int]:
    """Every process of a running ``tests.harness.Stack``, by what it is: the web master and
    its workers, the worker supervisor and its children (named by model, read from RQ's
    worker names ``<model>.<host>.<pid>`` when ``redis_client`` is given), Redis and the
    stand-ins."""
    found: dict[str, int] = {}
    if stack.web is not None:
        found["web master"] = stack.web.pid
        for number, pid in enumerate(sorted(children(stack.web.pid)), 1):
            found[f"web worker {number}"] = pid
    if stack.workers is not None:
        found["worker supervisor"] = stack.workers.pid
        models = {}
        if redis_client is not None:
            host = socket.gethostname().replace(":", "-")  # as workers.supervisor names them
            for key in redis_client.smembers("rq:workers"):
                name = key.decode().removeprefix("rq:worker:")
                rest, _, pid = name.rpartition(".")
                if pid.isdigit() and rest.endswith(f".{host}"):
                    models[int(pid)] = rest.removesuffix(f".{host}")  # a model's name may hold dots
        per_model: dict[str, int] = {}
        for pid in sorted(children(stack.workers.pid)):
            model = models.get(pid, "process")
            per_model[model] = per_model.get(model, 0) + 1
            found[f"worker {model} {per_model[model]}"] = pid
    if stack.redis_server is not None and stack.redis_server.process is not None:
        found["redis"] = stack.redis_server.process.pid
    for name in ("sandbox", "gitlab", "vertex"):
        process = getattr(stack, name, None)
        if process is not None:
            found[name] = process.pid
    return found


def sample(processes: dict[str, int]) -> dict[str, dict]:
    """``status`` of each named process still alive."""
    found = {}
    for label, pid in processes.items():
        try:
            found[label] = status(pid)
        except (OSError, ValueError, IndexError):
            continue
    return found
