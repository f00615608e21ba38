"""A small closed-loop HTTP load generator: N threads, each with its own
keep-alive connection, sending the same request back to back for a while."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    label: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    errors: int = 0
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p99_ms(self) -> float:
        return self.percentile(0.99) * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def run_load(label: str, url: str, body: dict, *, concurrency: int, duration: float,
             headers: dict | None = None, warmup: float = 1.0) -> LoadResult:
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    result = LoadResult(label, concurrency)
    lock = threading.Lock()
    start_measuring = time.monotonic() + warmup
    stop_at = start_measuring + duration

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        local: list[float] = []
        errors = 0
        while True:
            began = time.monotonic()
            if began >= stop_at:
                break
            try:
                connection.request("POST", parts.path, body=payload, headers=all_headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                ok = False
            if began >= start_measuring:
                if ok:
                    local.append(time.monotonic() - began)
                else:
                    errors += 1
        connection.close()
        with lock:
            result.latencies.extend(local)
            result.errors += errors

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + warmup + 120)
    result.seconds = duration
    return result
