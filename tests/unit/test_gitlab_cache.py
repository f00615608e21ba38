"""The GitLab answer cache against a real Redis (embedded): the per-process copy
serves fresh entries without a round trip, and never past their freshness."""

from __future__ import annotations

import json
import threading
import time

import pytest

from api import gitlab_cache
from api.gitlab_cache import GitLabCache
from shared.errors import GitLabUnavailable
from shared.keys import gitlab_cache_key, gitlab_done_key, gitlab_lock_key
from tests.harness import wait_for

WHO = gitlab_cache_key("token", "a" * 64)
PROJECT = gitlab_cache_key("project", "acme/api")


def cache_on(client, local_ttl: float = 60.0) -> GitLabCache:
    return GitLabCache(client, client, outage_grace=60, fetch_timeout=1, local_ttl=local_ttl)


def store(client, key: str, value, age: float) -> None:
    client.set(key, json.dumps({"value": value, "at": time.time() - age}))


def gets(client) -> int:
    return client.info("commandstats").get("cmdstat_get", {}).get("calls", 0)


def test_a_fresh_entry_read_once_is_then_served_without_redis(client):
    cache = cache_on(client)
    store(client, WHO, {"id": 7}, age=0)
    assert cache.fresh(WHO, ttl=60) == {"id": 7}
    before = gets(client)
    assert [cache.fresh(WHO, ttl=60) for _ in range(5)] == [{"id": 7}] * 5
    assert gets(client) == before


def test_the_local_copy_is_never_used_past_the_entry_s_own_freshness(client):
    cache = cache_on(client)
    store(client, WHO, {"id": 7}, age=5)
    assert cache.fresh(WHO, ttl=10) == {"id": 7}
    client.delete(WHO)  # e.g. expired in Redis meanwhile
    assert cache.fresh(WHO, ttl=10) == {"id": 7}  # still fresh: 5 s old, 10 s allowed
    assert cache.fresh(WHO, ttl=4) is None  # stale by this TTL: Redis is asked, and has nothing


def test_an_entry_deleted_from_redis_stops_counting_within_local_ttl(client):
    cache = cache_on(client, local_ttl=0.3)
    store(client, WHO, {"id": 7}, age=0)
    assert cache.fresh(WHO, ttl=60) == {"id": 7}
    began = time.monotonic()
    client.delete(WHO)  # an operator flushing the cache
    assert cache.fresh(WHO, ttl=60) == {"id": 7}
    wait_for(lambda: cache.fresh(WHO, ttl=60) is None, timeout=5, message="the local copy to lapse")
    assert time.monotonic() - began >= 0.3


def test_local_ttl_zero_always_asks_redis(client):
    cache = cache_on(client, local_ttl=0)
    store(client, WHO, {"id": 7}, age=0)
    before = gets(client)
    assert [cache.fresh(WHO, ttl=60) for _ in range(3)] == [{"id": 7}] * 3
    assert gets(client) == before + 3


def test_a_stale_local_copy_gives_way_to_a_newer_answer_in_redis(client):
    cache = cache_on(client)
    store(client, WHO, {"state": "active"}, age=30)
    assert cache.get(WHO, lambda: pytest.fail("fresh: no fetch"), ttl=60) == {"state": "active"}
    store(client, WHO, {"state": "blocked"}, age=0)  # another process fetched it again
    assert cache.get(WHO, lambda: pytest.fail("fresh: no fetch"), ttl=20) == {"state": "blocked"}


def test_a_cached_not_found_keeps_its_own_shorter_freshness(client):
    cache = cache_on(client)
    store(client, PROJECT, None, age=3)
    fetched = []
    assert cache.get(PROJECT, lambda: fetched.append(1) or {"id": 1}, ttl=300, ttl_if_none=10) is None
    assert cache.get(PROJECT, lambda: fetched.append(1) or {"id": 1}, ttl=300, ttl_if_none=2) == {"id": 1}
    assert fetched == [1]


def test_the_local_copy_is_bounded(client, monkeypatch):
    monkeypatch.setattr(gitlab_cache, "LOCAL_ENTRIES", 3)
    cache = cache_on(client)
    keys = [gitlab_cache_key("group", index) for index in range(5)]
    for index, key in enumerate(keys):
        store(client, key, index, age=0)
        cache.fresh(key, ttl=60)
    assert list(cache._local) == keys[2:]


# -- refusals, outages and what is kept -------------------------------------------

def test_a_refused_fetch_deletes_the_entry_so_no_outage_can_serve_it_again(client):
    cache = cache_on(client)
    store(client, WHO, {"id": 7}, age=90)  # stale (ttl 60) but within the outage grace (60 more)
    assert cache.fresh(WHO, ttl=120) == {"id": 7}  # this process holds a copy too

    def refused():
        raise gitlab_cache.Rejected({"reason": "invalid"})

    with pytest.raises(gitlab_cache.Rejected) as raised:
        cache.get(WHO, refused, ttl=60)
    assert raised.value.verdict == {"reason": "invalid"}
    assert client.get(WHO) is None
    assert cache.fresh(WHO, ttl=120) is None  # the local copy went with it

    def outage():
        raise GitLabUnavailable(retry_after=5)

    with pytest.raises(GitLabUnavailable):  # GitLab down now: 503, never the refused identity
        cache.get(WHO, outage, ttl=60)


def test_an_outage_serves_a_stale_entry_within_the_grace_only(client):
    cache = cache_on(client)

    def outage():
        raise GitLabUnavailable(retry_after=5)

    store(client, WHO, {"id": 7}, age=90)
    assert cache.get(WHO, outage, ttl=60) == {"id": 7}
    store(client, WHO, {"id": 7}, age=130)  # past ttl + outage_grace (60 + 60)
    with pytest.raises(GitLabUnavailable):
        cache.get(WHO, outage, ttl=60)


def test_waiters_get_the_fetch_s_refusal_and_never_their_stale_copy(client):
    fetching, release = threading.Event(), threading.Event()
    store(client, WHO, {"id": 7}, age=90)  # stale, within the grace: what a waiter read before waiting

    def refused_slowly():
        fetching.set()
        release.wait(5)
        raise gitlab_cache.Rejected({"reason": "blocked", "detail": "403 Forbidden - Your account has been blocked."})

    outcomes = []

    def fetcher():
        try:
            cache_on(client).get(WHO, refused_slowly, ttl=60)
        except gitlab_cache.Rejected as rejected:
            outcomes.append(("fetcher", rejected.verdict))

    def waiter():
        try:
            outcomes.append(("waiter", cache_on(client).get(WHO, lambda: pytest.fail("one fetch only"), ttl=60)))
        except gitlab_cache.Rejected as rejected:
            outcomes.append(("waiter", rejected.verdict))

    first = threading.Thread(target=fetcher)
    first.start()
    assert fetching.wait(5)
    second = threading.Thread(target=waiter)
    second.start()
    wait_for(lambda: any(c.get("cmd") == "xread" for c in client.client_list()), timeout=5,
             message="the waiter to block on the wake-up stream")
    release.set()
    first.join(10)
    second.join(10)
    verdict = {"reason": "blocked", "detail": "403 Forbidden - Your account has been blocked."}
    assert sorted(outcomes, key=str) == [("fetcher", verdict), ("waiter", verdict)]


def test_a_waiter_that_misses_the_wake_up_uses_what_redis_holds_now(client):
    cache = GitLabCache(client, client, outage_grace=60, fetch_timeout=0, local_ttl=0)  # waits 2 s at most
    store(client, WHO, {"id": 7}, age=90)  # stale, within the grace: what the waiter reads first
    client.set(gitlab_lock_key(WHO), "a fetch elsewhere", px=5000)  # whose wake-up this waiter never sees
    outcome = []

    def waiter():
        try:
            outcome.append(cache.get(WHO, lambda: pytest.fail("the lock is held elsewhere"), ttl=60))
        except GitLabUnavailable as unavailable:
            outcome.append(unavailable)

    thread = threading.Thread(target=waiter)
    thread.start()
    wait_for(lambda: any(c.get("cmd") == "xread" for c in client.client_list()), timeout=5,
             message="the waiter to block on the wake-up stream")
    client.delete(WHO)  # that fetch was refused and deleted the entry
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], GitLabUnavailable)


def test_a_not_found_expires_from_redis_with_its_own_ttl_and_gets_no_grace(client):
    cache = cache_on(client)
    assert cache.get(PROJECT, lambda: None, ttl=300, ttl_if_none=10) is None
    assert 0 < client.ttl(PROJECT) <= 10  # not ttl + outage_grace (360 s)
    assert cache.get(WHO, lambda: {"id": 7}, ttl=300) == {"id": 7}
    assert 300 < client.ttl(WHO) <= 360


def test_lock_and_wake_up_keys_are_never_cache_keys(client):
    cache = cache_on(client)
    hostile = gitlab_cache_key("project", "alice/scratch:lock")
    assert cache.get(hostile, lambda: None, ttl=300, ttl_if_none=10) is None
    real = gitlab_cache_key("project", "alice/scratch")
    assert not client.exists(gitlab_lock_key(real)) and not client.exists(gitlab_done_key(real))
    assert cache.get(real, lambda: {"id": 300}, ttl=300) == {"id": 300}
