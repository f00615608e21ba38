"""The sandbox provider's directives: how a test steers a model call from inside the text it sends.

The gateway never lets a client choose the upstream URL, so the sandbox reads its instructions from
the last user message (or the prompt, or an embedding input). A directive is removed from the reply
and from every token count. Its syntax, the one place it is defined (sandbox/README.md documents it):

    [[sandbox ITEM ITEM ...]]      ITEM is  key  or  key=value  (no spaces in a value), except
                                   args=<JSON>: a JSON value that may hold spaces, brackets and "]]"

An unterminated ``[[sandbox`` (no closing ``]]``) is ordinary text; a directive with an unknown or
malformed item is refused (400), so a typo never passes silently.
"""

from __future__ import annotations

import json
import re

START = "[[sandbox"
END = "]]"
TOOL_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
INT_KEYS = ("times", "delay_ms", "chunk_delay_ms", "silence_ms", "fail_after", "error_after", "words")
MAX_WORDS = 1_000_000  # `words=N`: a long answer, never one that exhausts the sandbox's memory
_KEY_RE = re.compile(r"[A-Za-z_]+")
_VALUE_RE = re.compile(r"[^\s\]]*")
_JSON = json.JSONDecoder()


def _scan(text: str, start: int) -> tuple[int, list[tuple[str, str, object]]] | None:
    """Parse the directive whose ``[[sandbox`` is at `start`: (its end, [(item text, key, value)]).

    None when this is not a directive after all (``[[sandboxes``, or no closing ``]]``).
    """
    i = start + len(START)
    if i < len(text) and not (text[i].isspace() or text.startswith(END, i)):
        return None
    items: list[tuple[str, str, object]] = []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return None
        if text.startswith(END, i):
            return i + len(END), items
        key_match = _KEY_RE.match(text, i)
        if key_match is None:
            bad = _VALUE_RE.match(text, i).group() or text[i]
            raise ValueError(f"bad sandbox directive item {bad!r}")
        key, j = key_match.group(), key_match.end()
        if j < len(text) and text[j] == "=":
            if key == "args":
                try:
                    value, end = _JSON.raw_decode(text, j + 1)
                except ValueError:
                    raise ValueError(f"bad sandbox directive item {text[i:j + 20]!r}...: args must be JSON "
                                     "(args={\"command\": \"echo hi\"})") from None
            else:
                value_match = _VALUE_RE.match(text, j + 1)
                value, end = value_match.group(), value_match.end()
            items.append((text[i:end], key, value))
            i = end
        else:
            end = _VALUE_RE.match(text, j).end()  # `key` alone, or a key glued to junk ("fail:3")
            items.append((text[i:end], key if end == j else text[i:end], None))
            i = end


def find_directives(text: str) -> list[tuple[int, int, list[tuple[str, str, object]]]]:
    """Every directive in `text`: (start, end, items)."""
    found = []
    position = 0
    while (start := text.find(START, position)) >= 0:
        scanned = _scan(text, start)
        if scanned is None:
            position = start + len(START)
            continue
        end, items = scanned
        found.append((start, end, items))
        position = end
    return found


def strip_directives(text: str) -> str:
    """`text` with its directives replaced by a space (token counts never include them)."""
    spans = find_directives(text)
    if not spans:
        return text
    parts, last = [], 0
    for start, end, _ in spans:
        parts += [text[last:start], " "]
        last = end
    parts.append(text[last:])
    return "".join(parts)


def _option(item: str, key: str, value) -> tuple[str, object]:
    if value is None:
        if key in ("hang", "close"):
            return key, True
    elif key == "args":
        if isinstance(value, (dict, str)):
            return key, value
        raise ValueError(f"bad sandbox directive item {item!r}: args must be a JSON object (or a string, "
                         "the input of a custom tool)")
    elif key == "fail" and value.isdigit() and 400 <= int(value) <= 599:
        return key, int(value)
    elif key == "words" and value.isdigit() and 1 <= int(value) <= MAX_WORDS:
        return key, int(value)
    elif key in INT_KEYS and key != "words" and value.isdigit():
        return key, int(value)
    elif key == "tool" and TOOL_NAME_RE.fullmatch(value):
        return key, value
    elif key == "retry_after" and value.isdigit():
        return key, value
    raise ValueError(f"bad sandbox directive item {item!r}")


def parse_directive(text: str) -> tuple[str, dict]:
    """Return (text with directives removed and whitespace collapsed, directive options)."""
    opts: dict = {}
    for _, _, items in find_directives(text):
        for item, key, value in items:
            name, parsed = _option(item, key, value)
            opts[name] = parsed
    if "args" in opts and "tool" not in opts:
        raise ValueError("sandbox directive 'args' needs 'tool' (e.g. [[sandbox tool=Bash args={...}]])")
    return " ".join(strip_directives(text).split()), opts
