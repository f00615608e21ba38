"""OpenAI `chat.completion.chunk` stream -> Anthropic Messages stream events, for Anthropic clients."""

from __future__ import annotations

from typing import Any

from shared.errors import UpstreamError
from workers.translate.anthropic_client_response import finish_reason_to_stop_reason


class ChatStreamToMessages:
    """OpenAI `chat.completion.chunk` dicts -> Anthropic stream events as (event, data) pairs."""

    def __init__(self, requested_model: str, message_id: str, input_tokens: int = 0):
        self.requested_model = requested_model
        self.message_id = message_id
        self._input = input_tokens
        self._output = 0
        self._started = self._stopped = False
        self._next_index = 0
        self._open: tuple[str, Any, int] | None = None  # ("text" | "tool", OpenAI tool key, block index)
        self._tools: dict[Any, int] = {}  # OpenAI tool call key -> block index
        self._stop_reason: str | None = None  # set once a finish_reason arrived

    @property
    def usage(self) -> dict:
        return {"input_tokens": self._input, "output_tokens": self._output}

    def _start(self, events: list) -> None:
        if not self._started:
            self._started = True
            events.append(("message_start", {"type": "message_start", "message": {
                "id": self.message_id, "type": "message", "role": "assistant", "model": self.requested_model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": self._input, "output_tokens": 0}}}))

    def _open_block(self, events: list, kind: str, key: Any, block: dict) -> int:
        self._close_block(events)
        index = self._next_index
        self._next_index += 1
        self._open = (kind, key, index)
        events.append(("content_block_start", {"type": "content_block_start", "index": index,
                                               "content_block": block}))
        return index

    def _close_block(self, events: list) -> None:
        if self._open is not None:
            events.append(("content_block_stop", {"type": "content_block_stop", "index": self._open[2]}))
            self._open = None

    def _end(self, events: list) -> None:
        # The chat stream's usage arrives last (include_usage), after message_start went out with
        # no input count; message_delta's usage is cumulative and the SDKs take input_tokens from
        # it when present (anthropic-sdk-python lib/streaming/_messages.py, accumulate_event).
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": self._stop_reason, "stop_sequence": None},
                                         "usage": {"input_tokens": self._input, "output_tokens": self._output}}))
        events.append(("message_stop", {"type": "message_stop"}))
        self._stopped = True

    def _tool_deltas(self, events: list, calls: list) -> None:
        for call in calls:
            key = call.get("index")
            if key is None:  # some servers omit the index: an id names the call, no id continues the open one
                key = call.get("id") or (self._open[1] if self._open and self._open[0] == "tool" else None)
            fn = call.get("function") or {}
            if key not in self._tools:
                self._tools[key] = self._open_block(events, "tool", key, {
                    "type": "tool_use", "id": call.get("id") or f"toolu_{len(self._tools)}",
                    "name": fn.get("name") or "", "input": {}})
            elif self._open is None or self._open[:2] != ("tool", key):
                raise UpstreamError("The model interleaved tool call arguments, which Anthropic streams cannot carry.")
            if fn.get("arguments"):
                events.append(("content_block_delta", {"type": "content_block_delta", "index": self._tools[key],
                                                       "delta": {"type": "input_json_delta",
                                                                 "partial_json": fn["arguments"]}}))

    def feed(self, chunk: dict) -> list[tuple[str, dict]]:
        if isinstance(chunk.get("error"), dict):
            raise UpstreamError(chunk["error"].get("message") or None)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            if usage.get("prompt_tokens") is not None:
                self._input = usage["prompt_tokens"]
            if usage.get("completion_tokens") is not None:
                self._output = usage["completion_tokens"]
        events: list[tuple[str, dict]] = []
        if self._stopped:
            return events
        self._start(events)
        choices = chunk.get("choices") or []
        choice = next((c for c in choices if c.get("index", 0) == 0), None)
        if choice is None:
            if isinstance(usage, dict) and self._stop_reason is not None:
                self._end(events)  # the usage-only chunk that follows the finish_reason
            return events
        delta = choice.get("delta") or {}
        text = delta.get("content") or delta.get("refusal")
        if isinstance(text, str) and text:
            index = self._open[2] if self._open and self._open[0] == "text" else self._open_block(
                events, "text", None, {"type": "text", "text": ""})
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index,
                                                   "delta": {"type": "text_delta", "text": text}}))
        self._tool_deltas(events, delta.get("tool_calls") or [])
        if choice.get("finish_reason") is not None and self._stop_reason is None:
            self._close_block(events)
            self._stop_reason = finish_reason_to_stop_reason(choice["finish_reason"])
            if isinstance(usage, dict):
                self._end(events)  # otherwise hold message_delta for a usage-only chunk or finish()
        return events

    def finish(self) -> list[tuple[str, dict]]:
        events: list[tuple[str, dict]] = []
        if self._stopped:
            return events
        self._start(events)
        self._close_block(events)
        if self._stop_reason is None:
            self._stop_reason = "end_turn"
        self._end(events)
        return events
