"""GitLab answers cached in Redis, shared by every API process and host.

- An answer is *fresh* for its TTL and used without asking GitLab.
- After that it is *stale*: GitLab is asked again, but if GitLab is unreachable
  (or answers 5xx/429) a stale answer keeps working for ``outage_grace`` more,
  so an outage does not lock out callers the gateway already knows.
- Each process reuses an entry it has read for ``local_ttl`` (a second by
  default, and never past the entry's own freshness), so a caller's requests in
  a row cost no round trip; an entry deleted from Redis stops counting within
  ``local_ttl``.
- Only one thread across all processes asks GitLab for a given key at a time
  (a Redis lock); the others block on a Redis Stream until it is done, then
  read its answer. A burst of requests with a new token makes one GitLab call.
- A fetch that GitLab refuses (``Rejected``: the credential was refused) deletes
  the entry at once, in Redis and in this process's copy, so no outage grace can
  serve it afterwards; waiters get the same verdict.
- A cached "not found" (``None``) is fresh for its own, shorter TTL and its Redis
  key expires then: it gets no outage grace, so made-up references leave nothing
  behind for long.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis import Redis

from shared.errors import GitLabUnavailable
from shared.keys import gitlab_done_key, gitlab_lock_key

LOCAL_ENTRIES = 10_000  # per process; the oldest go first past this

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Rejected(Exception):
    """The fetch's own verdict (e.g. a refused credential), shared with the waiters.
    ``verdict`` is a small JSON-able dict saying why, passed to them as it is."""

    def __init__(self, verdict: dict | None = None):
        super().__init__("rejected")
        self.verdict = dict(verdict or {})


class GitLabCache:
    def __init__(self, redis: Redis, blocking_redis: Redis, *, outage_grace: float, fetch_timeout: float,
                 local_ttl: float = 1.0):
        self.redis = redis
        self.blocking_redis = blocking_redis
        self.outage_grace = outage_grace
        self.fetch_timeout = fetch_timeout
        self._release = redis.register_script(_RELEASE)
        self.local_ttl = local_ttl
        self._local: dict[str, tuple[float, dict]] = {}  # key -> (when read, monotonic; the entry)
        self._local_lock = threading.Lock()

    def fresh(self, key: str, ttl: float) -> Any | None:
        """A fresh cached value, or None (not cached, or stale)."""
        entry = self._read(key, ttl)
        if entry is not None and time.time() - entry["at"] < ttl:
            return entry["value"]
        return None

    def get(self, key: str, fetch: Callable[[], Any], *, ttl: float, ttl_if_none: float | None = None) -> Any:
        """The value for ``key``: cached if fresh, else fetched once (raising ``Rejected``
        or ``GitLabUnavailable`` from ``fetch``), else stale within the outage grace.
        A cached ``None`` ("not found") is fresh for ``ttl_if_none`` instead, if given."""
        entry = self._read(key, ttl, ttl_if_none)
        if entry is not None and time.time() - entry["at"] < _fresh_for(entry, ttl, ttl_if_none):
            return entry["value"]
        token = uuid.uuid4().hex
        lock_ms = int((self.fetch_timeout + 2) * 1000)
        if self.redis.set(gitlab_lock_key(key), token, nx=True, px=lock_ms):
            try:
                return self._fetch(key, fetch, ttl, ttl_if_none, entry)
            finally:
                self._release(keys=[gitlab_lock_key(key)], args=[token])
        return self._wait_for_other(key, ttl, lock_ms)

    def forget(self, key: str) -> None:
        """Drop ``key`` from Redis and from this process's copy (other processes' copies
        lapse within ``local_ttl``)."""
        with self._local_lock:
            self._local.pop(key, None)
        self.redis.delete(key)

    def _fetch(self, key: str, fetch: Callable[[], Any], ttl: float, ttl_if_none: float | None,
               entry: dict | None) -> Any:
        try:
            value = fetch()
        except Rejected as rejected:
            self.forget(key)  # GitLab refused it: nothing stale may stand in for it now
            self._done(key, "rejected", rejected.verdict)
            raise
        except GitLabUnavailable as unavailable:
            self._done(key, "unavailable")
            return self._stale_or_raise(entry, ttl, unavailable)
        entry = {"value": value, "at": time.time()}
        keep = ttl_if_none if value is None and ttl_if_none is not None else ttl + self.outage_grace
        self.redis.set(key, json.dumps(entry), ex=max(1, int(keep)))
        self._remember(key, entry)
        self._done(key, "ok")
        return value

    def _wait_for_other(self, key: str, ttl: float, lock_ms: int) -> Any:
        # Stream ids are Redis's clock, not this host's: read from just before "now" by
        # Redis, so an answer that landed after our failed lock attempt is not missed.
        seconds, micros = self.redis.time()
        since_ms = seconds * 1000 + micros // 1000 - 1000
        outcome, verdict = None, None
        answer = self.blocking_redis.xread({gitlab_done_key(key): f"{since_ms}-0"}, block=lock_ms, count=1)
        for _stream, entries in answer or ():
            for _id, fields in entries:
                outcome = fields.get(b"outcome", b"").decode()
                verdict = fields.get(b"verdict")
        if outcome == "rejected":
            raise Rejected(_verdict(verdict))
        # What Redis holds now, not what this thread read before waiting: a fetch refused
        # meanwhile has deleted the entry, and a stale copy must not outlive that.
        current = self._read(key)
        if current is not None and time.time() - current["at"] < ttl:
            return current["value"]
        return self._stale_or_raise(current, ttl)

    def _stale_or_raise(self, entry: dict | None, ttl: float, error: GitLabUnavailable | None = None) -> Any:
        if entry is not None and time.time() - entry["at"] < ttl + self.outage_grace:
            return entry["value"]
        raise error or GitLabUnavailable(retry_after=5)

    def _done(self, key: str, outcome: str, verdict: dict | None = None) -> None:
        done = gitlab_done_key(key)
        fields = {"outcome": outcome}
        if verdict:
            fields["verdict"] = json.dumps(verdict)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(done, fields, maxlen=10, approximate=True)
        pipe.expire(done, 30)
        pipe.execute()

    def _read(self, key: str, ttl: float | None = None, ttl_if_none: float | None = None) -> dict | None:
        """The entry for ``key``: this process's copy while fresh (given ``ttl``), else Redis's."""
        seen, local = self._local.get(key, (0.0, None))
        if (ttl is not None and local is not None and time.monotonic() - seen < self.local_ttl
                and time.time() - local["at"] < _fresh_for(local, ttl, ttl_if_none)):
            return local
        raw = self.redis.get(key)
        entry = json.loads(raw) if raw else None
        if entry is not None:
            self._remember(key, entry)
        return entry

    def _remember(self, key: str, entry: dict) -> None:
        if self.local_ttl <= 0:
            return
        with self._local_lock:
            self._local.pop(key, None)  # re-inserted last: the dict's order is the eviction order
            self._local[key] = (time.monotonic(), entry)
            while len(self._local) > LOCAL_ENTRIES:
                self._local.pop(next(iter(self._local)))


def _verdict(raw: bytes | None) -> dict:
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _fresh_for(entry: dict, ttl: float, ttl_if_none: float | None) -> float:
    """A cached "not found" may have its own, shorter, freshness."""
    return ttl_if_none if entry["value"] is None and ttl_if_none is not None else ttl
