"""An API request waiting for its answer rides out a Redis restart (a real, persisted Redis)."""

from __future__ import annotations

import threading
import time

import pytest

from shared.connections import blocking_redis_client, redis_client
from shared.replies import ReplyChannel
from tools.embedded_redis import EmbeddedRedis


@pytest.fixture
def persisted():
    server = EmbeddedRedis(appendonly=True, appendfsync="always").start()
    yield server
    server.stop()


def wait_in_background(channel: ReplyChannel, deadline: float) -> dict:
    outcome: dict = {}

    def run():
        try:
            outcome["reply"] = channel.wait(deadline)
        except Exception as error:  # what must not happen: the wait failing on the outage
            outcome["error"] = error
        outcome["at"] = time.time()

    outcome["thread"] = threading.Thread(target=run, daemon=True)
    outcome["thread"].start()
    return outcome


def test_a_wait_reconnects_after_a_restart_and_gets_the_answer(persisted):
    channel = ReplyChannel(blocking_redis_client(persisted.url, longest_wait=30), "job-1")
    waiting = wait_in_background(channel, time.time() + 20)
    time.sleep(0.3)  # blocked in XREAD
    persisted.kill(crash=True)
    time.sleep(1.0)
    assert waiting["thread"].is_alive()  # still waiting, not failed
    persisted.start_again()
    ReplyChannel(redis_client(persisted.url), "job-1").send_result(200, b'{"ok": true}')
    waiting["thread"].join(10)
    assert "error" not in waiting, waiting.get("error")
    assert waiting["reply"].kind == "result" and waiting["reply"].body == b'{"ok": true}'


def test_an_entry_written_before_the_crash_is_read_after_it(persisted):
    ReplyChannel(redis_client(persisted.url), "job-2").send_result(200, b"{}")
    persisted.kill(crash=True)
    channel = ReplyChannel(blocking_redis_client(persisted.url, longest_wait=30), "job-2")
    waiting = wait_in_background(channel, time.time() + 20)
    time.sleep(0.5)
    persisted.start_again()
    waiting["thread"].join(10)
    assert waiting["reply"].kind == "result"  # on disk before the worker was told it was written


def test_a_wait_ends_at_its_deadline_while_redis_stays_away(persisted):
    channel = ReplyChannel(blocking_redis_client(persisted.url, longest_wait=30), "job-3")
    persisted.kill(crash=True)
    deadline = time.time() + 1.5
    waiting = wait_in_background(channel, deadline)
    waiting["thread"].join(10)
    assert "error" not in waiting, waiting.get("error")
    assert waiting["reply"] is None
    assert deadline <= waiting["at"] < deadline + 1.0  # no later than its deadline (plus a retry pause)
