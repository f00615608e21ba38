"""Rate limits and quotas, exact across every process: sliding logs in Redis.

Each limit counts what one scope (a model, a route, a caller under a route) was
admitted in a rolling window (a minute or 24 hours). A scope's window is a log, a
sorted set of its admissions scored by Redis's own clock (``TIME``), so host
clocks never matter: a limit of N per period admits at most N in *any* rolling
window of that period, never double across a boundary, never an approximation
that overshoots. A token limit keeps, beside the log of its scope and window
(the same one its requests limit counts), each admission's token count and their
running sum. A day's window counts by 5-minute bucket instead of by admission, so
that it does not keep a day of admissions in Redis memory; an admission counts
until its whole bucket has left the window, so that one never overshoots either.
What each window keeps, and the scripts that read and change it, are in
``shared.ratelimit_scripts``.

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
from shared.ratelimit_scripts import ADMIT, BUCKETS, BUCKETS_PER_DAY, NO_WRITE, SETTLE
from shared.settings import test_knobs

REQUESTS, TOKENS = "requests", "tokens"
MINUTE, DAY = 60, 86400
WINDOW_SCALE = test_knobs().window_scale  # 1 but in tests (AIGW_TEST_WINDOW_SCALE)
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
        if self.bucketed:  # not the names of a day's exact log before it was bucketed: those read otherwise
            return f"{base}:{REQUESTS}:{self.period}:buckets", f"{base}:{REQUESTS}:{self.period}:counts"
        return f"{base}:{REQUESTS}:{self.period}:log", f"{base}:{TOKENS}:{self.period}:amounts"

    @property
    def bucketed(self) -> bool:
        """A day's window counts by bucket (``shared.ratelimit_scripts``); there are no day token limits."""
        return self.period == DAY

    @property
    def settle_kind(self) -> str:
        return BUCKETS if self.bucketed else self.kind

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
                "limits": [[limit.settle_kind, *limit.keys] for limit in self.limits]}


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
    bucket_ms: int = 0  # 0: an exact log
    requests: Limit | None = None
    tokens: Limit | None = None


def _windows(limits: list[Limit]) -> list[_Window]:
    windows: dict[str, _Window] = {}
    for limit in limits:
        log, amounts = limit.keys
        bucket_ms = max(1, limit.window_ms // BUCKETS_PER_DAY) if limit.bucketed else 0
        window = windows.setdefault(log, _Window(log, amounts, limit.window_ms, bucket_ms))
        if limit.bucketed and limit.kind != REQUESTS:
            raise ValueError("a bucketed window counts requests only")
        if limit.kind == REQUESTS:
            window.requests = limit
        else:
            window.tokens = limit
    return list(windows.values())


class RateLimiter:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._scripts = {NO_WRITE: redis.register_script(NO_WRITE + ADMIT)}
        self._settle = redis.register_script(SETTLE)

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
                     window.tokens.limit if window.tokens else -1, reservation.tokens if window.tokens else 0,
                     window.bucket_ms]
        lua = write.lua if write is not None else NO_WRITE
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self.redis.register_script(lua + ADMIT)
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

    def keep(self, reservation: dict | Reservation, *, pipe=None) -> None:
        """The request reached the provider and its token estimate stays counted (no usage was
        reported): only what was kept for a refund goes."""
        self._settle_all(reservation, lambda kind: 0 if kind == BUCKETS else None, pipe)

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
            new_cost = cost(kind)
            if new_cost is None or (kind == REQUESTS and new_cost == 0):
                continue  # unchanged: a request stays counted once it reached the provider
            keys += [log_key, amounts_key]
            args += [kind, new_cost]
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
