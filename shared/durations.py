"""Durations in config files and environment variables: ``500ms``, ``30s``, ``2m``, ``1h``, ``1d``.

``parse_duration`` turns any accepted form into seconds (a float); plain numbers
mean seconds. ``format_duration`` goes the other way for summaries and messages,
choosing the largest unit that shows the value exactly.
"""

from __future__ import annotations

import math
import re

DURATION_HINT = "must be a duration such as 500ms, 30s, 2m"

# Lower-case units only: "1M" would read as a month to some people.
_DURATION = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> float:
    """Seconds for ``value``; raises ``ValueError(DURATION_HINT)`` for anything else."""
    # bool is an int subclass, and YAML reads `timeout: yes` as True.
    if isinstance(value, bool):
        raise ValueError(DURATION_HINT)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(DURATION_HINT) from None
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is None:
            raise ValueError(DURATION_HINT)
        number, unit = float(match.group(1)), match.group(2)
        # Divide for ms: 0.001 is not exact in binary, 1/1000 of an integer is closer.
        seconds = number / 1000 if unit == "ms" else number * _UNIT_SECONDS[unit or "s"]
    else:
        raise ValueError(DURATION_HINT)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(DURATION_HINT)
    return seconds


def format_duration(seconds: float) -> str:
    """A short form that ``parse_duration`` reads back: 0.5 -> 500ms, 120 -> 2m, 90 -> 90s."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        return f"{_number(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{_number(seconds)}s"


def _number(value: float) -> str:
    # Fixed-point, not %g: a long duration must not turn into 1.2e+06.
    text = f"{round(value, 3):.3f}".rstrip("0").rstrip(".")
    return text or "0"
