"""Streaming overhead: time to first token and per-chunk latency, direct vs gateway.

    python -m bench.streaming [--requests 40] [--words 30] [--chunk-delay-ms 5]

The sandbox stamps each streamed word with the time it sent it (same host
clock), so per-chunk latency is measured from the provider's send to the
client's receipt, for both paths in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.report import machine, publish
from sandbox.gitlab import DEMO_TOKEN
from sandbox.provider_stream import SEND_TIME_MARK
from shared.sse import SSEParser
from tests.harness import PROVIDER_KEY, Stack

CONFIG = """
models:
  - name: bench
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 60s
    workers: 1
"""


def one_stream(session: requests.Session, url: str, token: str, words: int, delay_ms: int):
    """(time to first content, [per-chunk latencies]) for one streamed request."""
    mark = SEND_TIME_MARK.decode()
    prompt = f"[[sandbox chunk_delay_ms={delay_ms}]] " + " ".join([mark] * words)
    body = {"model": "bench", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    started = time.time()
    first = None
    latencies = []
    parser = SSEParser()
    with session.post(url, json=body, stream=True, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as response:
        response.raise_for_status()
        for raw in response.iter_content(None):
            arrived = time.time()
            for _event, data in parser.feed(raw):
                if data.strip() == "[DONE]":
                    continue
                choices = json.loads(data).get("choices") or [{}]
                content = (choices[0].get("delta") or {}).get("content") or ""
                if not content.strip():
                    continue
                if first is None:
                    first = arrived - started
                try:
                    latencies.append(arrived - float(content.split()[-1]))
                except ValueError:
                    pass  # "Sandbox reply:" prefix words carry no stamp
    return first, latencies


def measure(label: str, url: str, token: str, args) -> dict:
    session = requests.Session()
    one_stream(session, url, token, 5, 0)  # warm the connection
    ttft, chunks = [], []
    for _ in range(args.requests):
        first, latencies = one_stream(session, url, token, args.words, args.chunk_delay_ms)
        ttft.append(first)
        chunks += latencies
    chunks.sort()
    return {"label": label, "ttft": statistics.median(ttft) * 1000, "chunk_p50": statistics.median(chunks) * 1000,
            "chunk_p99": chunks[int(0.99 * (len(chunks) - 1))] * 1000, "chunks": len(chunks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--words", type=int, default=30)
    parser.add_argument("--chunk-delay-ms", type=int, default=5)
    args = parser.parse_args(argv)
    stack = Stack(Path(tempfile.mkdtemp(prefix="aigw-bench-stream-")), CONFIG, web_workers=2,
                  env={"LOG_LEVEL": "warning"})
    try:
        stack.start()
        direct = measure("direct", f"{stack.sandbox_url}/v1/chat/completions", PROVIDER_KEY, args)
        gateway = measure("gateway", f"{stack.url}/v1/chat/completions", DEMO_TOKEN, args)
    finally:
        stack.stop()
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        f"{args.requests} streamed requests per path, {args.words} words each, {args.chunk_delay_ms} ms between "
        "words at the provider; sequential.",
        "",
        "| path | time to first token p50 ms | per-chunk latency p50 ms | p99 ms | chunks |",
        "|---|---|---|---|---|",
    ]
    for row in (direct, gateway):
        lines.append(f"| {row['label']} | {row['ttft']:.2f} | {row['chunk_p50']:.3f} | {row['chunk_p99']:.3f} | "
                     f"{row['chunks']} |")
    lines += ["", f"- gateway adds {gateway['ttft'] - direct['ttft']:.2f} ms to time to first token (p50)",
              f"- gateway adds {gateway['chunk_p50'] - direct['chunk_p50']:.3f} ms per chunk (p50)"]
    publish("streaming", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
