"""Rate-limit figures in each wire format's own headers.

OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, resets as
durations (``1s``, ``6m0s``, ``250ms``). Anthropic:
``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``, resets as
RFC 3339 times. Each shows the tightest applicable limit of its kind.
"""

from __future__ import annotations

import math
import time

from shared.ratelimit import REQUESTS, TOKENS, Figure, tightest


def openai_duration(ms: int) -> str:
    if ms < 1000:
        return f"{max(0, ms)}ms"
    seconds = ms / 1000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{int(hours)}h{int(minutes)}m{secs_text}s"
    if minutes:
        return f"{int(minutes)}m{secs_text}s"
    return f"{secs_text}s"


def rfc3339_in(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + math.ceil(max(0, ms) / 1000)))


def headers_for(figures: list[Figure], wire: str) -> dict[str, str]:
    headers = {}
    for kind in (REQUESTS, TOKENS):
        figure = tightest(figures, kind)
        if figure is None:
            continue
        if wire == "anthropic":
            headers[f"anthropic-ratelimit-{kind}-limit"] = str(figure.limit.limit)
            headers[f"anthropic-ratelimit-{kind}-remaining"] = str(figure.remaining)
            headers[f"anthropic-ratelimit-{kind}-reset"] = rfc3339_in(figure.reset_ms)
        else:
            headers[f"x-ratelimit-limit-{kind}"] = str(figure.limit.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(figure.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = openai_duration(figure.reset_ms)
    return headers
