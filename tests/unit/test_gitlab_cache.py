"""The GitLab answer cache against a real Redis (embedded): the per-process copy
serves fresh entries without a round trip, and never past their freshness."""

from __future__ import annotations

import json
import time

import pytest

from api import gitlab_cache
from api.gitlab_cache import GitLabCache
from tests.harness import wait_for
from tests.unit import redis_fixtures

server, client = redis_fixtures.server, redis_fixtures.client


def cache_on(client, local_ttl: float = 60.0) -> GitLabCache:
    return GitLabCache(client, client, outage_grace=60, fetch_timeout=1, local_ttl=local_ttl)


def store(client, key: str, value, age: float) -> None:
    client.set(key, json.dumps({"value": value, "at": time.time() - age}))


def gets(client) -> int:
    return client.info("commandstats").get("cmdstat_get", {}).get("calls", 0)


def test_a_fresh_entry_read_once_is_then_served_without_redis(client):
    cache = cache_on(client)
    store(client, "who", {"id": 7}, age=0)
    assert cache.fresh("who", ttl=60) == {"id": 7}
    before = gets(client)
    assert [cache.fresh("who", ttl=60) for _ in range(5)] == [{"id": 7}] * 5
    assert gets(client) == before


def test_the_local_copy_is_never_used_past_the_entry_s_own_freshness(client):
    cache = cache_on(client)
    store(client, "who", {"id": 7}, age=5)
    assert cache.fresh("who", ttl=10) == {"id": 7}
    client.delete("who")  # e.g. expired in Redis meanwhile
    assert cache.fresh("who", ttl=10) == {"id": 7}  # still fresh: 5 s old, 10 s allowed
    assert cache.fresh("who", ttl=4) is None  # stale by this TTL: Redis is asked, and has nothing


def test_an_entry_deleted_from_redis_stops_counting_within_local_ttl(client):
    cache = cache_on(client, local_ttl=0.3)
    store(client, "who", {"id": 7}, age=0)
    assert cache.fresh("who", ttl=60) == {"id": 7}
    began = time.monotonic()
    client.delete("who")  # an operator flushing the cache
    assert cache.fresh("who", ttl=60) == {"id": 7}
    wait_for(lambda: cache.fresh("who", ttl=60) is None, timeout=5, message="the local copy to lapse")
    assert time.monotonic() - began >= 0.3


def test_local_ttl_zero_always_asks_redis(client):
    cache = cache_on(client, local_ttl=0)
    store(client, "who", {"id": 7}, age=0)
    before = gets(client)
    assert [cache.fresh("who", ttl=60) for _ in range(3)] == [{"id": 7}] * 3
    assert gets(client) == before + 3


def test_a_stale_local_copy_gives_way_to_a_newer_answer_in_redis(client):
    cache = cache_on(client)
    store(client, "who", {"state": "active"}, age=30)
    assert cache.get("who", lambda: pytest.fail("fresh: no fetch"), ttl=60) == {"state": "active"}
    store(client, "who", {"state": "blocked"}, age=0)  # another process fetched it again
    assert cache.get("who", lambda: pytest.fail("fresh: no fetch"), ttl=20) == {"state": "blocked"}


def test_a_cached_not_found_keeps_its_own_shorter_freshness(client):
    cache = cache_on(client)
    store(client, "project", None, age=3)
    fetched = []
    assert cache.get("project", lambda: fetched.append(1) or {"id": 1}, ttl=300, ttl_if_none=10) is None
    assert cache.get("project", lambda: fetched.append(1) or {"id": 1}, ttl=300, ttl_if_none=2) == {"id": 1}
    assert fetched == [1]


def test_the_local_copy_is_bounded(client, monkeypatch):
    monkeypatch.setattr(gitlab_cache, "LOCAL_ENTRIES", 3)
    cache = cache_on(client)
    for index in range(5):
        store(client, f"k{index}", index, age=0)
        cache.fresh(f"k{index}", ttl=60)
    assert list(cache._local) == ["k2", "k3", "k4"]
