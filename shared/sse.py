"""Server-sent events: reading a provider's stream, and framing the client's.

Framing depends on the client's wire format: OpenAI sends ``data:`` lines and
ends with ``data: [DONE]``; Anthropic names each event (``event: ...``) and
keeps the connection warm with ``ping`` events; OpenAI's Responses API names
each event too, ends with ``response.completed`` (no ``[DONE]``) and is kept
warm with comments. A stream that fails after it started ends with an error
event in the same format, never with a clean end: silent truncation must not
look like a finished answer. For the Responses API that event is
``response.failed``, the only failure Codex reads (an ``error`` event it
ignores), naming the response ``response.created`` announced: ``ResponsesTail``
notes what the relay needs of the events it passed on.
"""

from __future__ import annotations

import json
import math

import orjson

from shared.errors import GatewayError, error_body

OPENAI, ANTHROPIC, RESPONSES = "openai", "anthropic", "responses"
# The events that end a Responses stream (openai-python types/responses/response_stream_event.py).
RESPONSES_ENDINGS = ("response.completed", "response.incomplete", "response.failed")


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
    if "\n" in payload:  # relayed data a provider spread over several data: lines: one each again
        payload = payload.replace("\n", "\ndata: ")
    if wire == ANTHROPIC or wire == RESPONSES:
        return f"event: {event or data.get('type')}\ndata: {payload}\n\n".encode()
    return f"data: {payload}\n\n".encode()


def done(wire: str) -> bytes:
    """OpenAI's end marker; Anthropic and Responses streams end with their own last event."""
    return b"data: [DONE]\n\n" if wire == OPENAI else b""


def keepalive(wire: str) -> bytes:
    if wire == ANTHROPIC:
        return frame(ANTHROPIC, {"type": "ping"})
    return b": keep-alive\n\n"


def error_event(wire: str, error: GatewayError, tail: ResponsesTail | None = None) -> bytes:
    """The event that ends a failed stream; a Responses stream's needs its ``tail``."""
    if wire == RESPONSES:
        return (tail or ResponsesTail()).failure(error)
    return frame(wire, error_body(error, wire))


def response_error(error: GatewayError) -> dict:
    """A gateway error as a Response's ``error`` (openai-python types/responses/response_error.py codes).

    Codex retries ``server_error``, waits for a rate limit as long as the message says
    ("try again in Ns"), and gives up on ``invalid_prompt`` (codex-rs codex-api/src/sse/responses.rs).
    """
    message = error.message
    if error.status == 429:
        code = "rate_limit_exceeded"
        if error.retry_after is not None and math.isfinite(error.retry_after):
            message = f"{message} Please try again in {max(1, math.ceil(error.retry_after))}s."
    elif 400 <= error.status < 500:
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": message}


def failed_response(error: GatewayError, *, response_id: str | None, created_at: int | float, model: str | None,
                    output: list[dict] | None = None) -> dict:
    """A ``Response`` in status ``failed`` that repeats no request fields."""
    return {"id": response_id, "object": "response", "created_at": created_at, "status": "failed",
            "background": False, "error": response_error(error), "incomplete_details": None, "model": model,
            "output": list(output or []), "usage": None, "parallel_tool_calls": True, "tool_choice": "auto",
            "tools": []}


class ResponsesTail:
    """What the API relaying a Responses stream knows of the events it passed on: the response
    ``response.created`` announced (the SDK refuses a ``response.failed`` naming another), how many
    events went out (the next ``sequence_number``) and whether one already ended the stream (a
    worker ends a translated stream with its own ``response.failed``, richer than this one)."""

    def __init__(self) -> None:
        self.response: dict = {}
        self.events = 0
        self.ended = False

    def relayed(self, chunk: bytes) -> None:
        """``chunk``: whole events, as the worker framed them (``event:`` and ``data:`` lines)."""
        if not self.events and chunk.startswith(b"event: response.created\n"):
            self._note_created(chunk)
        self.events += chunk.count(b"\n\n")
        last = chunk.rstrip(b"\n").rpartition(b"\n\n")[2]
        name = last[7:last.find(b"\n")] if last.startswith(b"event: ") else b""
        self.ended = name.decode(errors="replace") in RESPONSES_ENDINGS

    def _note_created(self, chunk: bytes) -> None:
        line = chunk.split(b"\n", 2)[1]
        try:
            response = orjson.loads(line[len(b"data: "):]).get("response")
        except (ValueError, AttributeError):
            return
        if isinstance(response, dict):
            self.response = response

    def failure(self, error: GatewayError) -> bytes:
        """``response.failed`` for ``error``, or nothing once the stream has ended."""
        if self.ended:
            return b""
        self.ended = True
        response = self.response
        failed = failed_response(error, response_id=response.get("id"), created_at=response.get("created_at") or 0,
                                 model=response.get("model"))
        return frame(RESPONSES, {"type": "response.failed", "response": failed, "sequence_number": self.events},
                     "response.failed")
