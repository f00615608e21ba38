"""Streams whose client does not read: what stays in Redis, and when the gateway gives up.

A 40,000-word answer (about 8 MB of events) against `jobs.max_unread_reply_bytes` of
64 KiB and a `stream_idle_timeout` of 3 s. The web process runs one request thread, so a
stream that held it would hold back every other request.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time

import pytest
import requests

from sandbox.gitlab import DEMO_TOKEN
from shared.keys import reply_stream_key
from tests.harness import Stack, wait_for

LIMIT = 64 * 1024
IDLE = 3.0
CONFIG = f"""
models:
  - name: chat
    type: generic
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 10s
    stream_idle_timeout: {IDLE:g}s
    workers: 1
    concurrency: 2
jobs:
  max_unread_reply_bytes: 64KiB
"""
LONG = "[[sandbox words=40000]] alpha beta gamma delta"
# About as many bytes in a fifth of the chunks: each word is 1,000 letters.
WIDE = "[[sandbox words=8000]] " + " ".join(letter * 1000 for letter in "abc")
REPLY_PREFIX = reply_stream_key("probe").removesuffix("probe")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("unread"), CONFIG, web_workers=1, web_threads=1) as gateway:
        yield gateway


def open_stream(stack: Stack, request_id: str, content: str = LONG) -> tuple[http.client.HTTPConnection,
                                                                            http.client.HTTPResponse]:
    """A streamed chat request whose headers have been read, and nothing more."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
    body = json.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": content}]})
    connection.request("POST", "/v1/chat/completions", body=body, headers={
        "Authorization": f"Bearer {DEMO_TOKEN}", "Content-Type": "application/json", "X-Request-Id": request_id})
    response = connection.getresponse()
    assert response.status == 200
    return connection, response


class ReplyWatch(threading.Thread):
    """Polls every reply stream in Redis: the most unread bytes one held, and its largest entry."""

    def __init__(self, stack: Stack):
        super().__init__(daemon=True)
        self.redis = stack.redis()
        self.most = 0
        self.largest_entry = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for key in self.redis.scan_iter(match=f"{REPLY_PREFIX}*"):
                sizes = [len(fields.get(b"data", b"")) for _id, fields in self.redis.xrange(key)]
                self.most = max(self.most, sum(sizes))
                self.largest_entry = max([self.largest_entry, *sizes])
            time.sleep(0.01)

    def stop(self) -> None:
        self.done.set()
        self.join(10)


def worker_records(stack: Stack, request_id: str) -> list[dict]:
    lines = [line for line in stack.workers.log().splitlines() if line.startswith("{")]
    return [record for record in map(json.loads, lines) if record.get("request_id") == request_id]


def sandbox_stream(stack: Stack, key: str) -> dict | None:
    streams = requests.get(f"{stack.sandbox_url}/_sandbox/streams", timeout=5).json()
    return next((s for s in streams if s["key"] == key), None)


def test_a_client_that_reads_nothing_holds_little_in_redis_and_is_dropped(stack):
    watch = ReplyWatch(stack)
    watch.start()
    connection = None
    try:
        connection, _ = open_stream(stack, "never-reads")
        # The API writes until the socket's buffers are full, then the worker until the limit.
        wait_for(lambda: watch.most >= LIMIT // 2, timeout=30, message="the worker to fill its allowance")
        other: dict = {}
        # The only request thread is still writing to the stalled client: this one waits for it.
        waiting = threading.Thread(target=lambda: other.update(answer=stack.chat("chat", "next please")))
        waiting.start()
        record = stack.access_record("never-reads", timeout=IDLE + 20)
        assert record["stream_outcome"] == "client_stalled" and record["status"] == 200
        waiting.join(IDLE + 10)
        assert other["answer"].status_code == 200  # the request thread was freed
        assert "Sandbox reply: next please" in other["answer"].text

        def job_ended():
            done = [r for r in worker_records(stack, "never-reads") if r.get("message") == "job done"]
            return done and done[0]

        done = wait_for(job_ended, timeout=10, message="the worker to end the job")
        assert done["code"] == "client_closed_request"  # cancelled, its slot free
        ended = wait_for(lambda: (sandbox_stream(stack, "never-reads") or {}).get("ended") and
                         sandbox_stream(stack, "never-reads"), timeout=10, message="the provider's stream to end")
        assert ended["reason"] == "client_closed"  # the provider was told: its connection was closed
    finally:
        watch.stop()
        if connection is not None:
            connection.close()
    # What Redis held never exceeded the limit plus one entry.
    assert LIMIT // 2 <= watch.most <= LIMIT + watch.largest_entry


def mask_created(body: bytes) -> bytes:
    """The provider stamps each event with the second it was made; two runs differ only there."""
    return re.sub(rb'"created":\d+', b'"created":0', body)


def test_a_slow_steady_reader_gets_the_whole_answer_byte_for_byte(stack):
    fast = requests.post(f"{stack.url}/v1/chat/completions", timeout=60,
                         headers={"Authorization": f"Bearer {DEMO_TOKEN}", "X-Request-Id": "fast-reader"},
                         json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": WIDE}]})
    assert fast.status_code == 200 and fast.content.endswith(b"data: [DONE]\n\n")
    assert len(fast.content) > 8_000_000  # more than the kernel's buffers and the limit hold together

    watch = ReplyWatch(stack)
    watch.start()
    connection = None
    try:
        connection, response = open_stream(stack, "slow-reader", WIDE)
        # Held back first, until the worker waits for this client...
        wait_for(lambda: watch.most >= LIMIT // 2, timeout=30, message="the worker to fill its allowance")
        # ...then read steadily, a little at a time, never pausing near the idle timeout.
        parts = []
        while part := response.read(16384):
            parts.append(part)
            time.sleep(0.005)
    finally:
        watch.stop()
        if connection is not None:
            connection.close()
    slow = b"".join(parts)
    assert mask_created(slow) == mask_created(fast.content)
    assert LIMIT // 2 <= watch.most <= LIMIT + watch.largest_entry
    assert stack.access_record("slow-reader")["stream_outcome"] == "completed"
