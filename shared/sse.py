"""Server-sent events: reading a provider's stream, and framing the client's.

Framing depends on the client's wire format: OpenAI sends ``data:`` lines and
ends with ``data: [DONE]``; Anthropic names each event (``event: ...``) and
keeps the connection warm with ``ping`` events. A stream that fails after it
started ends with an error event in the same format, never with a clean end:
silent truncation must not look like a finished answer.
"""

from __future__ import annotations

import json

from shared.errors import GatewayError, error_body

OPENAI, ANTHROPIC = "openai", "anthropic"


class SSEParser:
    """Incremental parser: feed bytes as they arrive, get complete (event, data) pairs."""

    def __init__(self):
        self._buffer = b""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        self._buffer += chunk
        events = []
        while True:
            cut = self._next_line_end()
            if cut is None:
                return events
            end, skip = cut
            line = self._buffer[:end].decode("utf-8", errors="replace")
            self._buffer = self._buffer[end + skip:]
            if not line:
                if self._data:
                    events.append((self._event, "\n".join(self._data)))
                self._event, self._data = None, []
                continue
            if line.startswith(":"):
                continue  # a comment: a keep-alive
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)

    def _next_line_end(self) -> tuple[int, int] | None:
        """Where the next line ends and how long its terminator is (\n, \r\n or \r)."""
        newline, carriage = self._buffer.find(b"\n"), self._buffer.find(b"\r")
        if carriage == -1 or (newline != -1 and newline < carriage):
            return (newline, 1) if newline != -1 else None
        if carriage + 1 < len(self._buffer):
            return carriage, 2 if self._buffer[carriage + 1] == 0x0A else 1
        return None  # a \r at the very end: a \n may follow


def frame(wire: str, data: dict | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    if wire == ANTHROPIC:
        return f"event: {event or data.get('type')}\ndata: {payload}\n\n".encode()
    return f"data: {payload}\n\n".encode()


def done(wire: str) -> bytes:
    """OpenAI's end marker; Anthropic streams end with their own message_stop event."""
    return b"data: [DONE]\n\n" if wire == OPENAI else b""


def keepalive(wire: str) -> bytes:
    if wire == ANTHROPIC:
        return frame(ANTHROPIC, {"type": "ping"})
    return b": keep-alive\n\n"


def error_event(wire: str, error: GatewayError) -> bytes:
    return frame(wire, error_body(error, wire))
