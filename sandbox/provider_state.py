"""What the sandbox provider remembers between calls, each part bounded: the request log (with bodies, so a
test can check what reached the provider) and the Responses API's stored responses.

Neither is thread-safe on its own: the server holds its lock around every use.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque

LOG_SIZE = 500
BODY_LIMIT = 1024 * 1024  # a body larger than this is logged by size only (Claude Code's are ~100 KB)
BODY_BUDGET = 32 * 1024 * 1024  # the log's bodies together; the oldest give theirs up first
STORED_RESPONSES = 1000
STORED_BYTES = 64 * 1024 * 1024


def _decoded(raw: bytes):
    """A logged body as a test reads it: the JSON it parses to, else its text."""
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class CallLog:
    """The newest `size` requests, newest last. An entry keeps its raw body while the bodies fit the budget."""

    def __init__(self, size: int = LOG_SIZE, body_limit: int = BODY_LIMIT, body_budget: int = BODY_BUDGET):
        self.entries: deque[list] = deque()  # [entry, raw body or None]
        self.size, self.body_limit, self.body_budget = size, body_limit, body_budget
        self.body_bytes = 0

    def append(self, entry: dict, raw: bytes) -> None:
        entry["body_bytes"] = len(raw)
        kept = raw if len(raw) <= self.body_limit else None
        self.entries.append([entry, kept])
        self.body_bytes += len(kept or b"")
        if len(self.entries) > self.size:
            _, dropped = self.entries.popleft()
            self.body_bytes -= len(dropped or b"")
        for record in self.entries:
            if self.body_bytes <= self.body_budget:
                break
            if record[1] is not None:
                self.body_bytes -= len(record[1])
                record[1] = None

    def snapshot(self, key: str | None = None, path: str | None = None) -> list[dict]:
        """Copies of the entries (filtered by key and path when given), each with its `body` decoded:
        None when it was over the limit or gave way to newer bodies."""
        return [{**entry, "body": None if raw is None else _decoded(raw)} for entry, raw in self.entries
                if (key is None or entry["key"] == key) and (path is None or entry["path"] == path)]

    def clear(self) -> None:
        self.entries.clear()
        self.body_bytes = 0


class ResponseStore:
    """Responses stored as OpenAI stores them (`store` not false): by id, the oldest evicted first."""

    def __init__(self, count: int = STORED_RESPONSES, max_bytes: int = STORED_BYTES):
        self.items: OrderedDict[str, tuple[dict, int]] = OrderedDict()
        self.count, self.max_bytes, self.bytes = count, max_bytes, 0

    def put(self, response_id: str, record: dict) -> None:
        """`record`: {"response": the Response object, "context": the conversation's items, input and output}."""
        size = len(json.dumps(record, separators=(",", ":")))
        self.delete(response_id)
        if size > self.max_bytes:
            return  # never kept: a continuation of it is refused as unknown, as after OpenAI's expiry
        self.items[response_id] = (record, size)
        self.bytes += size
        while len(self.items) > self.count or self.bytes > self.max_bytes:
            _, (_, dropped) = self.items.popitem(last=False)
            self.bytes -= dropped

    def get(self, response_id: str) -> dict | None:
        found = self.items.get(response_id)
        return None if found is None else found[0]

    def delete(self, response_id: str) -> bool:
        found = self.items.pop(response_id, None)
        if found is not None:
            self.bytes -= found[1]
        return found is not None

    def clear(self) -> None:
        self.items.clear()
        self.bytes = 0
