"""Rate limits and quotas, exact across every process: sliding logs in Redis.

Each limit counts what one scope (a model, a route, a caller under a route) was
admitted in a rolling window (a minute or 24 hours). A scope's window is a log, a
sorted set of its admissions scored by Redis's own clock (``TIME``), so host
clocks never matter: a limit of N per period admits at most N in *any* rolling
window of that period, never double across a boundary, never an approximation
that overshoots. A token limit keeps, beside the log of its scope and window
(the same one its requests limit counts), each admission's token count and their
running sum.

One Lua script checks every limit of a request and takes from all or from none,
so a scope that refuses never uses up another scope's allowance. Tokens are
reserved from an estimate at admission and corrected once the provider reports
usage (``reconcile``: a refund or an overdraw); a request that never reached the
provider gets everything back (``refund``). The API admits; the worker, which
sees the usage and knows whether the provider was called, settles.

What must be written in the same atomic step as an admission (the job it
admits: ``shared.rq_records``) is handed to ``RateLimiter.admit`` as a
``GuardedWrite``; this module knows nothing of what it writes.

Keys hold no limit values, only windows: a limit changed in the config applies
on restart to the same counts.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from redis import Redis

from shared.config import ModelConfig, RateLimit, Route
from shared.keys import KEY_PREFIX, key_part
from shared.settings import test_knobs

REQUESTS, TOKENS = "requests", "tokens"
MINUTE, DAY = 60, 86400
WINDOW_SCALE = test_knobs().window_scale  # 1 but in tests (AIGW_TEST_WINDOW_SCALE)
KEY_SLACK_MS = 60_000  # a log's key outlives its last admission's window by this much

# The admission. KEYS: per window, its log and its token amounts (unused without a token
# limit), then the handed write's keys. ARGV: the reservation id, the number of windows n,
# per window: its length in ms, its requests limit and its tokens limit (-1: none) and the
# tokens asked; then the handed write's ARGV. Answers {1, per window: requests used,
# tokens used, ms until its oldest admission leaves it} when admitted; {0, window, kind
# (1 requests, 2 tokens), ms until the request would fit (-1: never), per window: requests
# used, tokens used} when a limit refuses; {2, the write's answer} when the handed write
# refuses (before any allowance is looked at: its refusal comes first).
_ADMIT = """
pcall(redis.replicate_commands)
local SCAN = 16  -- a log's oldest entries looked at in one read: what left the window, and the oldest still in it
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, n = ARGV[1], tonumber(ARGV[2])
local wkeys, wargv = {}, {}
for i = 2 * n + 1, #KEYS do wkeys[#wkeys + 1] = KEYS[i] end
for i = 3 + 4 * n, #ARGV do wargv[#wargv + 1] = ARGV[i] end

local function chunked(cmd, key, items)
  for i = 1, #items, 500 do redis.call(cmd, key, unpack(items, i, math.min(i + 499, #items))) end
end

-- A window as it stands: what left it (to remove), what is in it, its oldest admission.
local windows = {}
for w = 1, n do
  local log, amounts, a = KEYS[2 * w - 1], KEYS[2 * w], 2 + (w - 1) * 4
  local win = {log = log, amounts = amounts, length = tonumber(ARGV[a + 1]), rlimit = tonumber(ARGV[a + 2]),
               tlimit = tonumber(ARGV[a + 3]), cost = tonumber(ARGV[a + 4]), expired = {}, tokens = 0}
  local cutoff = now - win.length
  local head = redis.call('ZRANGE', log, 0, SCAN - 1, 'WITHSCORES')
  for j = 1, #head, 2 do
    local score = tonumber(head[j + 1])
    if score > cutoff then win.oldest = score; break end
    win.expired[#win.expired + 1] = head[j]
  end
  if #head < 2 * SCAN then
    win.count = #head / 2 - #win.expired  -- the whole log was read
  else
    if win.oldest == nil then  -- every entry read has left the window: more may have
      win.expired = redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)
      local first = redis.call('ZRANGE', log, #win.expired, #win.expired, 'WITHSCORES')
      if #first > 0 then win.oldest = tonumber(first[2]) end
    end
    win.count = redis.call('ZCARD', log) - #win.expired
  end
  if win.tlimit >= 0 then
    if win.count == 0 then
      win.stale = true  -- nothing in the window: whatever the amounts hold is gone
    else
      local amounts_of = redis.call('HMGET', amounts, '_sum', unpack(win.expired))
      local sum = tonumber(amounts_of[1]) or 0
      for j = 2, #amounts_of do sum = sum - (tonumber(amounts_of[j]) or 0) end
      win.tokens = sum
    end
  end
  windows[w] = win
end

-- Remove what left each window; ``sum``: write the amounts' new sum too.
local function tidy(win, sum)
  if #win.expired > 0 then
    redis.call('ZREMRANGEBYRANK', win.log, 0, #win.expired - 1)
    if win.tlimit >= 0 and not win.stale then chunked('HDEL', win.amounts, win.expired) end
  end
  if win.stale then
    redis.call('DEL', win.amounts)
  elseif sum and win.tlimit >= 0 and #win.expired > 0 then
    redis.call('HSET', win.amounts, '_sum', win.tokens)
  end
end

-- When a refused request would fit: once enough of the window's admissions have left it.
local function retry_ms(win, kind)
  if kind == 1 then
    local rank = win.count + 1 - win.rlimit - 1
    local entry = redis.call('ZRANGE', win.log, rank, rank, 'WITHSCORES')
    return tonumber(entry[2]) + win.length - now
  end
  if win.cost > win.tlimit then return -1 end  -- the request alone is bigger than the limit
  local need, freed = win.tokens + win.cost - win.tlimit, 0
  for start = 0, win.count - 1, 100 do
    local entries = redis.call('ZRANGE', win.log, start, start + 99, 'WITHSCORES')
    local ids = {}
    for j = 1, #entries, 2 do ids[#ids + 1] = entries[j] end
    local amounts_of = redis.call('HMGET', win.amounts, unpack(ids))
    for j = 1, #ids do
      freed = freed + (tonumber(amounts_of[j]) or 0)
      if freed >= need then return tonumber(entries[2 * j]) + win.length - now end
    end
  end
  return win.length
end

local refused
for w = 1, n do
  local win = windows[w]
  if win.rlimit >= 0 and win.count + 1 > win.rlimit then refused = {w, 1}; break end
  if win.tlimit >= 0 and win.tokens + win.cost > win.tlimit then refused = {w, 2}; break end
end
if refused then
  local blocked = write_refusal(wkeys, wargv)
  if blocked then return {2, blocked} end
  local out = {0, refused[1], refused[2], 0}
  for w = 1, n do
    tidy(windows[w], true)
    out[#out + 1] = windows[w].count
    out[#out + 1] = windows[w].tokens
  end
  out[4] = retry_ms(windows[refused[1]], refused[2])
  return out
end
local blocked = write(wkeys, wargv)
if blocked then return {2, blocked} end
local out = {1}
for w = 1, n do
  local win = windows[w]
  tidy(win, false)
  redis.call('ZADD', win.log, now, id)
  redis.call('PEXPIRE', win.log, win.length + KEY_SLACK_MS)
  if win.tlimit >= 0 then
    redis.call('HSET', win.amounts, id, win.cost, '_sum', win.tokens + win.cost)
    redis.call('PEXPIRE', win.amounts, win.length + KEY_SLACK_MS)
  end
  out[#out + 1] = win.count + 1
  out[#out + 1] = win.tokens + win.cost
  out[#out + 1] = (win.oldest or now) + win.length - now
end
return out
""".replace("KEY_SLACK_MS", str(KEY_SLACK_MS))

# What an admission with nothing handed to it writes: nothing.
_NO_WRITE = """
local function write_refusal(keys, argv) end
local function write(keys, argv) end
"""

# The settlement. KEYS: per limit, its log and its amounts. ARGV: the reservation id, then
# per limit its kind and its new cost (-1: remove the admission entirely).
_SETTLE = """
local id, removed = ARGV[1], {}
for i = 1, #KEYS / 2 do
  local log, amounts, kind, cost = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i], tonumber(ARGV[2 * i + 1])
  if kind == 'tokens' then
    local found = redis.call('HMGET', amounts, id, '_sum')
    local old = tonumber(found[1])
    if old then  -- still in its window (a settlement after the window has nothing to correct)
      local sum = tonumber(found[2]) or 0
      if cost < 0 then
        redis.call('HDEL', amounts, id)
        redis.call('HSET', amounts, '_sum', sum - old)
      else
        redis.call('HSET', amounts, id, cost, '_sum', sum - old + cost)
      end
    end
  end
  if cost < 0 and not removed[log] then
    redis.call('ZREM', log, id)
    removed[log] = true
  end
end
return 1
"""


class GuardedWrite(Protocol):
    """Writes another module needs made in the same atomic step as an admission.

    ``lua`` defines two functions, each called with the write's own ``keys`` and
    ``args`` (Lua tables): ``write(keys, argv)`` writes, or refuses (answers non-nil,
    having written nothing), before any allowance is taken; ``write_refusal(keys, argv)``,
    asked only when a limit refuses, answers non-nil if ``write`` would have refused,
    since the write's refusal comes first. A refusal's answer is raised as ``WriteRefused``.
    """

    lua: str
    keys: list[str]
    args: list

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
        """The log of the scope's admissions in this limit's window (both kinds count it), and
        the token amounts of those admissions with their sum (a token limit's)."""
        base = f"{KEY_PREFIX}:rl:{self.scope}"
        return f"{base}:{REQUESTS}:{self.period}:log", f"{base}:{TOKENS}:{self.period}:amounts"

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


@dataclass(frozen=True)
class Reservation:
    id: str
    limits: list[Limit]
    tokens: int
    figures: list[Figure] = field(default_factory=list)  # the limits as the admission left them

    @classmethod
    def of(cls, limits: list[Limit], tokens: int) -> Reservation:
        return cls(uuid.uuid4().hex, limits, max(0, int(tokens)))

    def to_dict(self) -> dict:
        """What the job carries so the worker can settle: keys and kinds, no figures."""
        return {"id": self.id, "tokens": self.tokens,
                "limits": [[limit.kind, *limit.keys] for limit in self.limits]}


class OverLimit(Exception):
    """A limit refused the request: nothing was taken from any limit."""

    def __init__(self, limit: Limit, retry_after: float | None, figures: list[Figure]):
        self.limit = limit
        self.retry_after = retry_after  # None: never, the request alone exceeds the limit
        self.figures = figures
        super().__init__(limit.label)


class WriteRefused(Exception):
    """The write handed to the admission refused (``GuardedWrite``): nothing was written or taken."""

    def __init__(self, answer: int):
        self.answer = answer
        super().__init__(f"refused: {answer}")


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


@dataclass
class _Window:
    """The limits of a request that count one log (one scope's window)."""

    log: str
    amounts: str
    length_ms: int
    requests: Limit | None = None
    tokens: Limit | None = None


def _windows(limits: list[Limit]) -> list[_Window]:
    windows: dict[str, _Window] = {}
    for limit in limits:
        log, amounts = limit.keys
        window = windows.setdefault(log, _Window(log, amounts, limit.window_ms))
        if limit.kind == REQUESTS:
            window.requests = limit
        else:
            window.tokens = limit
    return list(windows.values())


class RateLimiter:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._scripts = {_NO_WRITE: redis.register_script(_NO_WRITE + _ADMIT)}
        self._settle = redis.register_script(_SETTLE)

    def admit(self, limits: list[Limit], tokens: int) -> Reservation:
        """Take one request (and ``tokens``) from every limit, or raise ``OverLimit``."""
        reservation = Reservation.of(limits, tokens)
        if not limits:
            return reservation
        return Reservation(reservation.id, limits, reservation.tokens, self.take(reservation))

    def take(self, reservation: Reservation, write: GuardedWrite | None = None) -> list[Figure]:
        """Take ``reservation`` from every limit and make ``write`` in the same atomic step (one
        round trip): the figures of every limit after it, or ``OverLimit`` / ``WriteRefused``
        raised, and then nothing is written and no allowance is taken."""
        windows = _windows(reservation.limits)
        keys: list = []
        args: list = [reservation.id, len(windows)]
        for window in windows:
            keys += [window.log, window.amounts]
            args += [window.length_ms, window.requests.limit if window.requests else -1,
                     window.tokens.limit if window.tokens else -1, reservation.tokens if window.tokens else 0]
        lua = write.lua if write is not None else _NO_WRITE
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self.redis.register_script(lua + _ADMIT)
        if write is not None:
            keys, args = keys + list(write.keys), args + list(write.args)
        return self._figures(windows, [int(value) for value in script(keys=keys, args=args)])

    @staticmethod
    def _figures(windows: list[_Window], answer: list[int]) -> list[Figure]:
        """The script's answer as each limit's figure, in the windows' order."""
        if answer[0] == 2:
            raise WriteRefused(answer[1])
        figures: list[Figure] = []
        if answer[0] == 1:
            for index, window in enumerate(windows):
                requests, tokens, reset = answer[1 + 3 * index: 4 + 3 * index]
                figures += [Figure(limit, used, reset) for limit, used in
                            ((window.requests, requests), (window.tokens, tokens)) if limit is not None]
            return figures
        refused_window, kind, retry_ms = answer[1] - 1, answer[2], answer[3]
        refused = windows[refused_window].requests if kind == 1 else windows[refused_window].tokens
        for index, window in enumerate(windows):
            requests, tokens = answer[4 + 2 * index: 6 + 2 * index]
            for limit, used in ((window.requests, requests), (window.tokens, tokens)):
                if limit is refused:
                    figures.append(Figure(limit, limit.limit, max(0, retry_ms)))
                elif limit is not None:
                    figures.append(Figure(limit, used, limit.window_ms))
        raise OverLimit(refused, None if retry_ms < 0 else retry_ms / 1000, figures)

    def refund(self, reservation: dict | Reservation, *, pipe=None) -> None:
        """Give everything back: the request never reached the provider. Given a pipeline,
        the settlement is put on it (see ``_settle_all``)."""
        self._settle_all(reservation, lambda kind: -1, pipe)

    def reconcile(self, reservation: dict | Reservation, actual_tokens: int, *, pipe=None) -> None:
        """Replace the token estimate with what the provider reported (refund or overdraw)."""
        self._settle_all(reservation, lambda kind: max(0, int(actual_tokens)) if kind == TOKENS else 0, pipe)

    def _settle_all(self, reservation: dict | Reservation, cost, pipe=None) -> None:
        """On ``pipe``, the script is called by its digest alone: a pipeline with a script
        object on it asks Redis whether it has the script first, a round trip of its own.
        The caller makes the settlement again without ``pipe`` if Redis answers that it
        lost the script (``NoScriptError``): that loads it."""
        data = reservation.to_dict() if isinstance(reservation, Reservation) else reservation
        if not data or not data.get("limits"):
            return
        keys, args = [], [data["id"]]
        for kind, log_key, amounts_key in data["limits"]:
            if kind == REQUESTS and cost(kind) == 0:
                continue  # a request stays counted once it reached the provider
            keys += [log_key, amounts_key]
            args += [kind, cost(kind)]
        if not keys:
            return
        if pipe is not None:
            pipe.evalsha(self._settle.sha, len(keys), *keys, *args)
        else:
            self._settle(keys=keys, args=args)  # loads the script again if Redis lost it


def estimate_tokens(body: dict, default_output: int) -> int:
    """Prompt size (about 4 characters a token) plus the answer it may get."""
    prompt = text_length([body.get(field) for field in ("messages", "tools", "system", "prompt", "input",
                                                         "instructions")])
    output = (body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
              or default_output)
    return math.ceil(prompt / 4) + int(output)


def text_length(value) -> int:
    """Characters of text in a JSON value, its keys included. Walked, not ``str()``-ed: the
    repr of a large prompt is slow (docs/benchmarks.md), and recurses as deep as the value."""
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
