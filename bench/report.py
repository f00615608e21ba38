"""A benchmark's report: printed, and kept in bench/results/ with the time it ran."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def publish(name: str, lines: list[str]) -> None:
    report = "\n".join(lines)
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.md").write_text(report + "\n")


def machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    system = f"{platform.system()} {platform.release()}"
    return f"{cpus} CPUs ({model}), Python {platform.python_version()}, {system}"
