"""Waiting for answers: the janitor deletes read reply streams in batches, off the answers'
way, and its thread starts and stops with the app (building one starts no thread)."""

from __future__ import annotations

import threading

from api.answers import Janitor
from api.app import create_app
from shared.config import parse_config
from shared.settings import Settings
from tests.harness import wait_for


def janitors() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "reply-janitor"]


def test_the_janitor_deletes_read_streams_in_batches_a_moment_later(client):
    keys = [f"aigw:reply:{index}" for index in range(1200)]  # more than one DEL takes
    for key in keys:
        client.xadd(key, {"kind": "result"})
    janitor = Janitor(client, batch_delay=1.0)
    janitor.start()
    try:
        for key in keys:
            janitor.discard(key)
        assert client.exists(keys[0])  # not at once: the answer goes out first
        wait_for(lambda: client.exists(*keys) == 0, timeout=10, message="every stream deleted")
    finally:
        janitor.stop()


def test_stopping_deletes_what_is_pending_and_ends_the_thread(client):
    client.xadd("aigw:reply:last", {"kind": "result"})
    janitor = Janitor(client, batch_delay=0.2)
    janitor.start()
    janitor.discard("aigw:reply:last")
    janitor.stop()
    assert not client.exists("aigw:reply:last")
    assert not janitors()


def test_an_app_runs_no_thread_until_started_and_none_once_closed(redis_server):
    before = set(threading.enumerate())
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://127.0.0.1:9/v1"}]}, {})
    app = create_app(Settings(redis_url=redis_server.url), config)
    assert set(threading.enumerate()) == before
    app.start()
    assert len(janitors()) == 1
    app.close()
    assert set(threading.enumerate()) == before
