"""Slow and idle clients cannot stop the gateway (api.web_worker): with 300 connections sending
their heads a line every two seconds and 300 idle ones, all from one address, requests from
another address are each answered within 3 s, by one web process of 16 threads."""

from __future__ import annotations

import resource
import statistics
import time

import pytest

from tests.harness import Stack, wait_for
from tests.integration.conftest import CORE_CONFIG
from tests.integration.raw_http import AUTH, SlowHeads, chat_request, connect, read_answer

SLOW = 300
IDLE = 300
LINE_INTERVAL = 2.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 <= hard or soft < hard < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))  # 600 client sockets here
    # The attacker's address is no trusted proxy and may hold them all: what is tested is
    # that the connections cost no thread, not that the cap refuses them.
    with Stack(tmp_path_factory.mktemp("slow"), CORE_CONFIG, web_workers=1, web_threads=16, env={
        "FORWARDED_ALLOW_IPS": "127.0.0.5", "MAX_CONNECTIONS_PER_ADDRESS": "1000",
        "REQUEST_HEADER_TIMEOUT": "120"}) as gateway:
        yield gateway


def test_slow_and_idle_clients_do_not_delay_anyone_else(stack):
    slow = SlowHeads(stack.port, SLOW, LINE_INTERVAL)
    idle = [connect(stack.port) for _ in range(IDLE)]
    try:
        time.sleep(LINE_INTERVAL + 0.5)  # every slow head has begun to trickle
        assert slow.lines >= 1
        seconds = []
        for n in range(20):
            started = time.monotonic()
            with connect(stack.port, "127.0.0.2", timeout=10) as sock:
                sock.sendall(chat_request(f"not delayed {n}", close=True))
                answer = read_answer(sock)
            seconds.append(time.monotonic() - started)
            assert answer.status == 200, answer.body
            assert answer.json()["choices"][0]["message"]["content"] == f"Sandbox reply: not delayed {n}"
        assert max(seconds) < 3.0, seconds
        print(f"\nanswered with {SLOW} slow and {IDLE} idle connections open: median "
              f"{statistics.median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms")
        # None of them was dropped meanwhile: each is served once its request is complete.
        slow.finish()
        for sock in slow.sockets:
            sock.sendall(b"\r\n")
        for sock in slow.sockets:
            assert read_answer(sock).status == 200
        for sock in idle:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
        for sock in idle:
            assert read_answer(sock).status == 200
    finally:
        slow.finish()
        for sock in slow.sockets + idle:
            sock.close()


def big_upload_head(size: int) -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n" + AUTH
            + b"\r\nContent-Length: %d\r\n\r\n" % size)


def test_one_client_may_hold_only_a_few_large_bodies_in_flight(stack):
    """Bodies received (or being served) count against their client: four of the largest at
    once, then the client is refused 429 while others are served; one ending frees its room."""
    largest = 10 * 1024 * 1024  # MAX_BODY_BYTES's default
    uploads = [connect(stack.port, "127.0.0.3") for _ in range(4)]
    try:
        for sock in uploads:
            sock.sendall(big_upload_head(largest) + b"x" * 1000)  # then nothing: still arriving
        with connect(stack.port, "127.0.0.3") as fifth:
            fifth.sendall(big_upload_head(1000))
            refused = read_answer(fifth)
        assert refused.status == 429
        assert refused.json()["error"]["code"] == "too_much_in_flight"
        assert refused.headers["retry-after"] == "1"
        with connect(stack.port, "127.0.0.2") as other:  # another client is not affected
            other.sendall(chat_request("someone else", close=True))
            assert read_answer(other).status == 200
        uploads.pop().close()  # one of them gives up: its room is the client's again

        def admitted() -> bool:
            with connect(stack.port, "127.0.0.3") as again:
                again.sendall(big_upload_head(largest) + b"x" * largest)
                return read_answer(again).status == 400  # received whole: the app says it is not JSON

        assert wait_for(admitted, timeout=10, interval=0.2, message="the client's room to come back")
    finally:
        for sock in uploads:
            sock.close()
