"""Rate limits and quotas, exact across every process: sliding logs in Redis.

Each limit (a scope, a kind and a window) is a sorted set of the admissions in
its window, scored by Redis's own clock (``TIME``), so host clocks never matter.
A limit of N per period therefore admits at most N in *any* rolling window of
that period: no fixed windows that admit double across a boundary, no
approximation that can overshoot. Token limits also keep each admission's
token count and a running sum.

One Lua script checks every limit of a request and takes from all or from none,
so a scope that refuses never uses up another scope's allowance. Tokens are
reserved from an estimate at admission and corrected once the provider reports
usage (``reconcile``: a refund or an overdraw); a request that never reached the
provider gets everything back (``refund``). The API admits; the worker, which
sees the usage and knows whether the provider was called, settles.

Keys hold no limit values, only windows: a limit changed in the config applies
on restart to the same counts.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass, field

from redis import Redis

from shared.config import ModelConfig, RateLimit, Route
from shared.keys import KEY_PREFIX, key_part

REQUESTS, TOKENS = "requests", "tokens"
MINUTE, DAY = 60, 86400
# Tests shrink the periods (a minute of 3 s); nothing else should set this.
WINDOW_SCALE = float(os.environ.get("AIGW_TEST_WINDOW_SCALE") or 1.0)

_LUA_COMMON = """
pcall(redis.replicate_commands)
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function chunked(cmd, key, items)
  for i = 1, #items, 500 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 499, #items)))
  end
end
-- Drop admissions older than the window; return what is still in use.
local function purge(zkey, hkey, kind, cutoff)
  if kind == 'requests' then
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', cutoff)
    return redis.call('ZCARD', zkey)
  end
  local expired = redis.call('ZRANGEBYSCORE', zkey, '-inf', cutoff)
  if #expired > 0 then
    local freed = 0
    for i = 1, #expired, 500 do
      local amounts = redis.call('HMGET', hkey, unpack(expired, i, math.min(i + 499, #expired)))
      for _, amount in ipairs(amounts) do freed = freed + (tonumber(amount) or 0) end
    end
    chunked('HDEL', hkey, expired)
    redis.call('ZREMRANGEBYSCORE', zkey, '-inf', cutoff)
    redis.call('HINCRBY', hkey, '_sum', -freed)
  end
  return tonumber(redis.call('HGET', hkey, '_sum') or '0')
end
"""

# KEYS: per limit, its sorted set and its hash. ARGV: id, count, then per limit kind, window ms, limit, cost.
# Returns {1, used_1, oldest_1, ...} when admitted, {0, index, retry_ms, used_1, ...} when refused.
# Enqueue mode (``admit_and_enqueue``): three more KEYS, the RQ queue, the job's hash and RQ's set of
# queues; more ARGV: the job id, the queue's limit, the job's time to live in s (0: none), then the
# job's hash as field, value pairs. Only a job the queue has room for ({2, depth} otherwise) and every
# limit admits is written: saved and pushed as RQ's enqueue does, in the same atomic step.
_ADMIT = _LUA_COMMON + """
local now = now_ms()
local id, n = ARGV[1], tonumber(ARGV[2])
local queue_key, job_key, queues_key = KEYS[2 * n + 1], KEYS[2 * n + 2], KEYS[2 * n + 3]
if queue_key then
  local depth = redis.call('LLEN', queue_key)
  if depth >= tonumber(ARGV[4 + 4 * n]) then return {2, depth} end
end
local used, refusal = {}, nil
for i = 1, n do
  local zkey, hkey, a = KEYS[2 * i - 1], KEYS[2 * i], 2 + (i - 1) * 4
  local kind, window, limit, cost = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local u = purge(zkey, hkey, kind, now - window)
  used[i] = u
  if refusal == nil and u + cost > limit then
    local retry = -1  -- never: the request alone is bigger than the limit
    if cost <= limit then
      local need, freed = u + cost - limit, 0
      local entries = redis.call('ZRANGE', zkey, 0, -1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        freed = freed + (kind == 'requests' and 1 or (tonumber(redis.call('HGET', hkey, entries[j])) or 0))
        if freed >= need then retry = tonumber(entries[j + 1]) + window - now; break end
      end
    end
    refusal = {i, retry}
  end
end
if refusal then return {0, refusal[1], refusal[2], unpack(used)} end
local out = {1}
for i = 1, n do
  local zkey, hkey, a = KEYS[2 * i - 1], KEYS[2 * i], 2 + (i - 1) * 4
  local kind, window, cost = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 4])
  redis.call('ZADD', zkey, now, id)
  redis.call('PEXPIRE', zkey, window + 60000)
  if kind == 'tokens' then
    redis.call('HSET', hkey, id, cost)
    redis.call('HINCRBY', hkey, '_sum', cost)
    redis.call('PEXPIRE', hkey, window + 60000)
  end
  local oldest = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  table.insert(out, used[i] + cost)
  table.insert(out, tonumber(oldest[2]) + window - now)
end
if queue_key then
  local job_id, ttl = ARGV[3 + 4 * n], tonumber(ARGV[5 + 4 * n])
  redis.call('HSET', job_key, unpack(ARGV, 6 + 4 * n))
  if ttl > 0 then redis.call('EXPIRE', job_key, ttl) end
  redis.call('SADD', queues_key, queue_key)
  redis.call('RPUSH', queue_key, job_id)
end
return out
"""

# KEYS: per limit, sorted set and hash. ARGV: id, then per limit: kind, new cost (-1 = remove entirely).
_SETTLE = """
local id = ARGV[1]
for i = 1, #KEYS / 2 do
  local zkey, hkey, kind, cost = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  if redis.call('ZSCORE', zkey, id) then
    local old = tonumber(redis.call('HGET', hkey, id) or '0')
    if cost < 0 then
      redis.call('ZREM', zkey, id)
      if kind == 'tokens' then redis.call('HDEL', hkey, id); redis.call('HINCRBY', hkey, '_sum', -old) end
    elseif kind == 'tokens' then
      redis.call('HSET', hkey, id, cost)
      redis.call('HINCRBY', hkey, '_sum', cost - old)
    end
  end
end
return 1
"""


@dataclass(frozen=True)
class Limit:
    scope: str  # "model:gpt-4o", "route:acme", "route:acme:user:2", "route:acme:project:100"
    label: str  # what a refusal names: "model 'gpt-4o'", "your user under route 'acme'", ...
    kind: str  # REQUESTS | TOKENS
    period: int  # seconds: MINUTE or DAY
    limit: int

    @property
    def window_ms(self) -> int:
        return max(1, int(self.period * 1000 * WINDOW_SCALE))

    @property
    def keys(self) -> tuple[str, str]:
        base = f"{KEY_PREFIX}:rl:{self.scope}:{self.kind}:{self.period}"
        return f"{base}:log", f"{base}:amounts"

    @property
    def scope_kind(self) -> str:
        """model, route, user or project: a bounded label for metrics."""
        parts = self.scope.split(":")
        return parts[2] if len(parts) > 2 else parts[0]

    def describe(self) -> str:
        unit = "requests" if self.kind == REQUESTS else "tokens"
        return f"{self.limit} {unit} per {'minute' if self.period == MINUTE else '24 hours'}"


@dataclass
class Figure:
    """One limit after a decision: for the x-ratelimit-* headers."""

    limit: Limit
    used: int
    reset_ms: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit.limit - self.used)


@dataclass
class Reservation:
    id: str
    limits: list[Limit]
    tokens: int
    figures: list[Figure] = field(default_factory=list)

    def to_dict(self) -> dict:
        """What the job carries so the worker can settle: keys and kinds, no figures."""
        return {"id": self.id, "tokens": self.tokens,
                "limits": [[limit.kind, *limit.keys] for limit in self.limits]}


class QueueAtLimit(Exception):
    """Enqueue mode: the model's queue already holds its limit of waiting jobs."""

    def __init__(self, depth: int):
        self.depth = depth
        super().__init__(f"{depth} jobs waiting")


class RateLimited(Exception):
    def __init__(self, limit: Limit, retry_after: float | None, figures: list[Figure]):
        self.limit = limit
        self.retry_after = retry_after  # None: never, the request alone exceeds the limit
        self.figures = figures
        super().__init__(limit.label)


def limits_for(model: ModelConfig, route: Route | None, user_id: str | None, project_id: str | None) -> list[Limit]:
    """Every limit that applies to a request: its model's, then its route's (shared or per caller)."""
    # Each variable part escaped (shared.keys.key_part): a route named "a:user:2" is not route "a"'s user 2.
    found = _limits(f"model:{key_part(model.name)}", f"model '{model.name}'", model.rate_limit)
    if route is not None:
        scope, label = f"route:{key_part(route.name)}", f"route '{route.name}'"
        if route.rate_limit.per == "user":
            scope, label = f"{scope}:user:{key_part(user_id or '-')}", f"your user under route '{route.name}'"
        elif route.rate_limit.per == "project":
            scope, label = f"{scope}:project:{key_part(project_id or '-')}", f"your project under route '{route.name}'"
        found += _limits(scope, label, route.rate_limit)
    return found


def _limits(scope: str, label: str, config: RateLimit) -> list[Limit]:
    wanted = [(REQUESTS, MINUTE, config.requests_per_minute), (TOKENS, MINUTE, config.tokens_per_minute),
              (REQUESTS, DAY, config.requests_per_day)]
    return [Limit(scope, label, kind, period, value) for kind, period, value in wanted if value]


class RateLimiter:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)

    def admit(self, limits: list[Limit], tokens: int) -> Reservation:
        """Take one request (and ``tokens``) from every limit, or raise ``RateLimited``."""
        reservation = Reservation(uuid.uuid4().hex, limits, max(0, int(tokens)))
        if not limits:
            return reservation
        keys, args = self._admission(reservation)
        return self.decide(reservation, self._admit(keys=keys, args=args))

    def admit_and_enqueue(self, reservation: Reservation, *, queue_key: str, job_key: str, queues_key: str,
                          job_id: str, max_depth: int, ttl: int | None, job_fields: dict) -> Reservation:
        """Admission and the enqueue of an RQ job (its hash, ``job_fields``, and its id pushed
        on ``queue_key``) in one atomic round trip: the job is written only if the queue holds
        fewer than ``max_depth`` jobs (else ``QueueAtLimit``) and every limit admits it (else
        ``RateLimited``); either refusal writes nothing and takes no allowance."""
        keys, args = self._admission(reservation)
        fields = [item for pair in job_fields.items() for item in pair]
        answer = self._admit(keys=[*keys, queue_key, job_key, queues_key],
                             args=[*args, job_id, max_depth, max(0, int(ttl or 0)), *fields])
        return self.decide(reservation, answer)

    def _admission(self, reservation: Reservation) -> tuple[list, list]:
        keys, args = [], [reservation.id, len(reservation.limits)]
        for limit in reservation.limits:
            keys += limit.keys
            args += [limit.kind, limit.window_ms, limit.limit, 1 if limit.kind == REQUESTS else reservation.tokens]
        return keys, args

    def decide(self, reservation: Reservation, answer) -> Reservation:
        """The script's answer: the reservation with its figures, or ``RateLimited`` /
        ``QueueAtLimit`` (enqueue mode) raised."""
        limits = reservation.limits
        answer = [int(value) for value in answer]
        if answer[0] == 2:
            raise QueueAtLimit(answer[1])
        if answer[0] == 1:
            reservation.figures = [Figure(limit, answer[1 + 2 * i], answer[2 + 2 * i])
                                   for i, limit in enumerate(limits)]
            return reservation
        index, retry_ms, used = answer[1] - 1, answer[2], answer[3:]
        refused = limits[index]
        figures = [Figure(limit, used[i], limit.window_ms) for i, limit in enumerate(limits)]
        figures[index] = Figure(refused, refused.limit, max(0, retry_ms))
        raise RateLimited(refused, None if retry_ms < 0 else retry_ms / 1000, figures)

    def refund(self, reservation: dict | Reservation) -> None:
        """Give everything back: the request never reached the provider."""
        self._settle_all(reservation, lambda kind: -1)

    def reconcile(self, reservation: dict | Reservation, actual_tokens: int) -> None:
        """Replace the token estimate with what the provider reported (refund or overdraw)."""
        self._settle_all(reservation, lambda kind: max(0, int(actual_tokens)) if kind == TOKENS else 0)

    def _settle_all(self, reservation: dict | Reservation, cost) -> None:
        data = reservation.to_dict() if isinstance(reservation, Reservation) else reservation
        if not data or not data.get("limits"):
            return
        keys, args = [], [data["id"]]
        for kind, log_key, amounts_key in data["limits"]:
            if kind == REQUESTS and cost(kind) == 0:
                continue  # a request stays counted once it reached the provider
            keys += [log_key, amounts_key]
            args += [kind, cost(kind)]
        if keys:
            self._settle(keys=keys, args=args)  # loads the script again if Redis lost it


def estimate_tokens(body: dict, default_output: int) -> int:
    """Prompt size (about 4 characters a token) plus the answer it may get."""
    prompt = text_length([body.get(field) for field in ("messages", "tools", "system", "prompt", "input")])
    output = body.get("max_completion_tokens") or body.get("max_tokens") or default_output
    return math.ceil(prompt / 4) + int(output)


def text_length(value) -> int:
    """Characters of text in a JSON value, its keys included. Walked, not ``str()``-ed: the
    repr of a large prompt costs about 3 ms a megabyte, and recurses as deep as the value."""
    total, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            total += sum(len(key) for key in item if isinstance(key, str))
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif item is not None:
            total += 4  # a number or a boolean
    return total


def tightest(figures: list[Figure], kind: str) -> Figure | None:
    """The figure of ``kind`` with the least left: what the rate-limit headers show."""
    candidates = [figure for figure in figures if figure.limit.kind == kind]
    return min(candidates, key=lambda f: (f.remaining, -f.reset_ms), default=None)
