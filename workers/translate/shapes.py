"""Shapes of a request's JSON that every translation checks the same way, whatever its format."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.errors import InvalidRequest


def objects(value: Any, param: str) -> Iterator[tuple[str, dict]]:
    """``value`` as a list of objects, each with its path (``tools[2]``); checked as it is
    walked, so the first problem in the list is the one refused."""
    if not isinstance(value, list):
        raise InvalidRequest(f"'{param}' must be a list", param=param)
    for k, item in enumerate(value):
        p = f"{param}[{k}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{p}' must be an object", param=p)
        yield p, item
