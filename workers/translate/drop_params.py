"""A model's ``drop_params``: what a translation removes from a request instead of refusing it (pure).

An operator lists fields the target cannot express and the client can do without: a field name
(``thinking``), a dotted path into objects (``output_config.effort``), or ``tools.<type>`` for every
tool of a built-in type (``tools.web_search``; an Anthropic type's date suffix may be left out:
``tools.web_search`` also names ``web_search_20250305``). What was removed is named, as the
operator wrote it, so the access record and the ``x-aigw-dropped-params`` header can say so.
Passthrough never calls this: a provider that speaks the client's format judges every field.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

# Anthropic versions its tool types with a date: web_search_20250305, bash_20250124.
_DATED = re.compile(r"^(?P<type>.+)_\d{8}$")


@dataclass
class Dropped:
    """The paths a translation dropped, in the order it dropped them, each once."""

    paths: list[str] = field(default_factory=list)

    def note(self, path: str) -> None:
        if path not in self.paths:
            self.paths.append(path)


def tool_type_matches(listed: str, kind: object) -> bool:
    """Whether ``tools.<listed>`` names a tool of type ``kind`` (exactly, or without its date)."""
    if not isinstance(kind, str):
        return False
    dated = _DATED.match(kind)
    return kind == listed or (dated is not None and dated.group("type") == listed)


def without_dropped(body: dict, drop: Collection[str], dropped: Dropped | None = None) -> tuple[dict, Dropped]:
    """``body`` without what ``drop`` names and it holds (a set field, a tool of that type); the
    request's own objects are copied where changed, never modified."""
    dropped = dropped if dropped is not None else Dropped()
    if not drop:
        return body, dropped
    out = dict(body)
    for path in drop:
        head, _, rest = path.partition(".")
        if head == "tools" and rest and "." not in rest:
            _drop_tools(out, rest, path, dropped)
        elif _drop_path(out, path.split(".")):
            dropped.note(path)
    return out, dropped


def _drop_tools(body: dict, kind: str, path: str, dropped: Dropped) -> None:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return
    kept = [tool for tool in tools if not (isinstance(tool, dict) and tool_type_matches(kind, tool.get("type")))]
    if len(kept) != len(tools):
        body["tools"] = kept
        dropped.note(path)


def _drop_path(node: dict, keys: list[str]) -> bool:
    """Remove ``keys`` (a path) from ``node``, copying each object on the way; True if it was set."""
    key = keys[0]
    if key not in node or node[key] is None:
        return False
    if len(keys) == 1:
        del node[key]
        return True
    child = node[key]
    if not isinstance(child, dict):
        return False
    child = dict(child)
    if not _drop_path(child, keys[1:]):
        return False
    node[key] = child
    return True
