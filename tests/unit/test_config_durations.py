"""Durations in the config file: parsing ``500ms``/``30s``/``2m``-style values and formatting them back."""

from __future__ import annotations

import pytest

from shared.durations import format_duration, parse_duration


@pytest.mark.parametrize(("value", "seconds"), [
    (0, 0.0), (30, 30.0), (1.5, 1.5), ("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0),
    ("1d", 86400.0), ("30", 30.0), ("1.5s", 1.5), (" 10s ", 10.0), ("250 ms", 0.25),
])
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [
    True, False, -1, -0.5, "-1s", "", "soon", "1x", "1M", "s", "1.s", "1e3", None, [1], float("inf"),
    float("nan"), 10**400,
])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"^must be a duration such as 500ms, 30s, 2m$"):
        parse_duration(value)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.5, "500ms"), (0.25, "250ms"), (30, "30s"), (120, "2m"), (90, "90s"), (1.5, "1.5s"),
    (3600, "1h"), (5400, "90m"), (86400, "1d"), (1234567, "1234567s"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
