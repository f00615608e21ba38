"""Refusing what a target format cannot express: a 400 naming the field, never a silent drop."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from shared.errors import UnsupportedParameter

Unsupported = Callable[[str, str], UnsupportedParameter]


def unsupported_for(target: str) -> Unsupported:
    """The refusal for a field ``target`` ("Anthropic models") cannot express: ``(param, why)``."""

    def unsupported(param: str, why: str) -> UnsupportedParameter:
        return UnsupportedParameter(f"'{param}' is not supported for {target} ({why})", param=param)

    return unsupported


def refuse_unknown_keys(fields: dict, known: Collection[str], unsupported: Unsupported, *, equivalent: str,
                        prefix: str = "", empty: tuple[Any, ...] = (None,)) -> None:
    """Refuse the first key outside ``known`` whose value is not one of ``empty`` (set but meaningless)."""
    for key, value in fields.items():
        if key not in known and value not in empty:
            raise unsupported(f"{prefix}{key}", f"no {equivalent} equivalent")
