"""The chat pivot's stream -> OpenAI Responses API stream events (pure).

The event sequence is the one OpenAI sends and its SDK accumulates
(openai-python lib/streaming/responses/_responses.py, ``ResponseStreamState``):
``response.created``, ``response.in_progress``, then per output item
``response.output_item.added``, its content events, ``response.output_item.done``,
and last ``response.completed`` (or ``response.incomplete`` when the answer was cut
off) carrying the usage; every event has a ``sequence_number`` one above the last.
Content events, by item:

- reasoning: ``response.reasoning_summary_part.added``, ``response.reasoning_summary_text.delta``...,
  ``.done``, ``response.reasoning_summary_part.done``; the sealed thinking is on the item's done event;
- message: ``response.content_part.added``, ``response.output_text.delta``..., ``response.output_text.done``
  (``response.refusal.*`` for a refusal), ``response.content_part.done``;
- function call: ``response.function_call_arguments.delta``..., ``response.function_call_arguments.done``;
- custom tool call: ``response.custom_tool_call_input.delta``, ``.done`` (its input is only known whole,
  since the model writes it as a JSON argument).

Codex builds its history from ``response.output_item.done`` and reads a failure from
``response.failed``'s ``response.error`` (codex-rs codex-api/src/sse/responses.rs,
``process_responses_event``), which is how a failure after the first event is told.
"""

from __future__ import annotations

from typing import Any

from shared.errors import GatewayError, UpstreamError
from shared.sse import failed_response, response_error
from workers.translate.responses_items import ResponsesTool, item_id
from workers.translate.responses_request import ChatRequest
from workers.translate.responses_response import (
    call_item,
    call_prefix,
    custom_input,
    message_item,
    reasoning_item,
    reasoning_text,
    refusal_part,
    response_object,
    responses_usage,
    status_of,
    text_part,
)

Event = tuple[str, dict]


def failure_event(error: GatewayError, request: ChatRequest | None, *, response_id: str, created_at: int | float,
                  model: str, sequence_number: int, output: list[dict] | None = None) -> Event:
    """``response.failed`` for a stream that fails after its first event.

    For the API's own failures (a lost worker) ``request`` may be None: the Response then repeats no
    request fields. The response id must be the one ``response.created`` gave, since the SDK checks it.
    """
    response = failed_response(error, response_id=response_id, created_at=created_at, model=model, output=output)
    if request is not None:
        response = response_object(request, response_id=response_id, created_at=created_at, model=model,
                                   status="failed", output=list(output or []), usage=None,
                                   error=response_error(error))
    return "response.failed", {"type": "response.failed", "response": response, "sequence_number": sequence_number}


class _Item:
    """An output item being streamed."""

    def __init__(self, kind: str, index: int, ref: str, key: Any = None, tool: ResponsesTool | None = None,
                 call_id: str = ""):
        self.kind = kind  # "reasoning", "message", "call"
        self.index = index
        self.ref = ref
        self.key = key  # the chat tool call's key, for calls
        self.tool = tool
        self.call_id = call_id
        self.text = ""  # reasoning summary text, or the arguments of a call
        self.blocks: list[dict] = []  # sealed thinking, for reasoning
        self.parts: list[dict] = []  # finished content parts, for messages
        self.part: str | None = None  # "output_text" or "refusal": the content part being streamed
        self.summary_open = False


class ChatStreamToResponses:
    """Chat ``chat.completion.chunk`` dicts -> Responses events as (event name, data) pairs."""

    def __init__(self, request: ChatRequest, *, response_id: str, created_at: int | float, requested_model: str):
        self.request = request
        self.response_id = response_id
        self.created_at = created_at
        self.model = requested_model
        self._seq = 0
        self._started = self._ended = False
        self._items: list[dict] = []  # finished output items, in order
        self._open: _Item | None = None
        self._calls: dict[Any, _Item] = {}  # chat tool call key -> its item
        self._finish: str | None = None  # the finish_reason, once it arrived
        self._chat_usage: dict | None = None

    @property
    def usage(self) -> dict | None:
        """The chat stream's usage (OpenAI-shaped, for the gateway's accounting)."""
        return self._chat_usage

    # -- framing ----------------------------------------------------------------------------------
    def _event(self, events: list[Event], kind: str, **fields: Any) -> None:
        events.append((kind, {"type": kind, **fields, "sequence_number": self._seq}))
        self._seq += 1

    def _response(self, status: str, incomplete: dict | None = None) -> dict:
        done = status in ("completed", "incomplete")
        return response_object(self.request, response_id=self.response_id, created_at=self.created_at,
                               model=self.model, status=status, output=list(self._items) if done else [],
                               usage=responses_usage(self._chat_usage) if done else None, incomplete=incomplete)

    def _start(self, events: list[Event]) -> None:
        if not self._started:
            self._started = True
            self._event(events, "response.created", response=self._response("in_progress"))
            self._event(events, "response.in_progress", response=self._response("in_progress"))

    # -- items ------------------------------------------------------------------------------------
    def _next_index(self, events: list[Event]) -> int:
        """The output index of a new item: the open one is finished first, so indexes follow the output."""
        self._close(events)
        return len(self._items)

    def _added(self, events: list[Event], item: _Item, snapshot: dict) -> _Item:
        self._open = item
        self._event(events, "response.output_item.added", output_index=item.index, item=snapshot)
        return item

    def _reasoning(self, events: list[Event]) -> _Item:
        if self._open is not None and self._open.kind == "reasoning":
            return self._open
        index = self._next_index(events)
        ref = item_id("rs", self.response_id, index)
        return self._added(events, _Item("reasoning", index, ref), {"id": ref, "type": "reasoning", "summary": []})

    def _message(self, events: list[Event], part: str) -> _Item:
        item = self._open
        if item is None or item.kind != "message":
            index = self._next_index(events)
            ref = item_id("msg", self.response_id, index)
            item = self._added(events, _Item("message", index, ref), message_item(ref, [], "in_progress"))
        if item.part != part:
            self._close_part(events, item)
            item.part, item.text = part, ""
            empty = text_part("") if part == "output_text" else refusal_part("")
            self._event(events, "response.content_part.added", item_id=item.ref, output_index=item.index,
                        content_index=len(item.parts), part=empty)
        return item

    def _close_part(self, events: list[Event], item: _Item) -> None:
        if item.part is None:
            return
        where = {"item_id": item.ref, "output_index": item.index, "content_index": len(item.parts)}
        if item.part == "output_text":
            part = text_part(item.text)
            self._event(events, "response.output_text.done", **where, text=item.text, logprobs=[])
        else:
            part = refusal_part(item.text)
            self._event(events, "response.refusal.done", **where, refusal=item.text)
        self._event(events, "response.content_part.done", **where, part=part)
        item.parts.append(part)
        item.part = None

    def _close(self, events: list[Event], status: str = "completed") -> None:
        item, self._open = self._open, None
        if item is None:
            return
        where = {"item_id": item.ref, "output_index": item.index}
        if item.kind == "reasoning":
            if item.summary_open:
                summary = {"summary_index": 0}
                self._event(events, "response.reasoning_summary_text.done", **where, **summary, text=item.text)
                self._event(events, "response.reasoning_summary_part.done", **where, **summary,
                            part={"type": "summary_text", "text": item.text})
            done = reasoning_item(item.ref, item.text, item.blocks)
        elif item.kind == "message":
            self._close_part(events, item)
            done = message_item(item.ref, item.parts, status)
        elif item.tool.kind == "custom":
            value = custom_input(item.text)
            if value:
                self._event(events, "response.custom_tool_call_input.delta", **where, delta=value)
            self._event(events, "response.custom_tool_call_input.done", **where, input=value)
            done = call_item(item.tool, item.ref, item.call_id, item.text, status)
        else:
            self._event(events, "response.function_call_arguments.done", **where, arguments=item.text)
            done = call_item(item.tool, item.ref, item.call_id, item.text, status)
        self._items.append(done)
        self._event(events, "response.output_item.done", output_index=item.index, item=done)

    def _tool_deltas(self, events: list[Event], calls: list) -> None:
        for call in calls:
            key = call.get("index")
            if key is None:  # some servers omit the index: an id names the call, no id continues the open one
                key = call.get("id") or (self._open.key if self._open and self._open.kind == "call" else None)
            fn = call.get("function") or {}
            item = self._calls.get(key)
            if item is None:
                tool = self.request.tools.tool(fn.get("name") or "")
                index = self._next_index(events)
                ref = item_id(call_prefix(tool), self.response_id, index)
                call_id = call.get("id") or f"call_{self.response_id.removeprefix('resp_')}_{index}"
                item = self._calls[key] = _Item("call", index, ref, key, tool, call_id)
                snapshot = call_item(tool, ref, call_id, "", "in_progress")
                self._added(events, item, snapshot)
            elif self._open is not item:
                raise UpstreamError("The model interleaved tool call arguments, which the gateway cannot relay.")
            piece = fn.get("arguments")
            if isinstance(piece, str) and piece:
                item.text += piece
                if item.tool.kind != "custom":
                    self._event(events, "response.function_call_arguments.delta", item_id=item.ref,
                                output_index=item.index, delta=piece)

    # -- the chat stream ----------------------------------------------------------------------------
    def feed(self, chunk: dict) -> list[Event]:
        if isinstance(chunk.get("error"), dict):
            raise UpstreamError(chunk["error"].get("message") or None)
        if isinstance(chunk.get("usage"), dict):
            self._chat_usage = chunk["usage"]
        events: list[Event] = []
        if self._ended:
            return events
        self._start(events)
        choice = next((c for c in chunk.get("choices") or [] if c.get("index", 0) == 0), None)
        if choice is None:
            if isinstance(chunk.get("usage"), dict) and self._finish is not None:
                self._end(events)  # the usage-only chunk that follows the finish_reason
            return events
        delta = choice.get("delta") or {}
        thinking = reasoning_text(delta)
        if thinking:
            item = self._reasoning(events)
            if not item.summary_open:
                item.summary_open = True
                self._event(events, "response.reasoning_summary_part.added", item_id=item.ref,
                            output_index=item.index, summary_index=0, part={"type": "summary_text", "text": ""})
            item.text += thinking
            self._event(events, "response.reasoning_summary_text.delta", item_id=item.ref, output_index=item.index,
                        summary_index=0, delta=thinking)
        if isinstance(delta.get("thinking_blocks"), list) and delta["thinking_blocks"]:
            self._reasoning(events).blocks.extend(delta["thinking_blocks"])
        for part, key in (("output_text", "content"), ("refusal", "refusal")):
            text = delta.get(key)
            if isinstance(text, str) and text:
                item = self._message(events, part)
                item.text += text
                where = {"item_id": item.ref, "output_index": item.index, "content_index": len(item.parts)}
                if part == "output_text":
                    self._event(events, "response.output_text.delta", **where, delta=text, logprobs=[])
                else:
                    self._event(events, "response.refusal.delta", **where, delta=text)
        self._tool_deltas(events, delta.get("tool_calls") or [])
        if choice.get("finish_reason") is not None and self._finish is None:
            self._finish = choice["finish_reason"]
            self._close(events, "incomplete" if status_of(self._finish)[0] == "incomplete" else "completed")
            if isinstance(chunk.get("usage"), dict):
                self._end(events)  # otherwise hold the completion for a usage-only chunk or finish()
        return events

    def _end(self, events: list[Event]) -> None:
        self._close(events)
        status, incomplete = status_of(self._finish)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self._event(events, kind, response=self._response(status, incomplete))
        self._ended = True

    def finish(self) -> list[Event]:
        events: list[Event] = []
        if not self._ended:
            self._start(events)
            self._end(events)
        return events

    def fail(self, error: GatewayError) -> list[Event]:
        """``response.failed`` for an error after the stream started (nothing if it never started:
        the error is then an ordinary HTTP error; nothing more once the stream has ended)."""
        if not self._started or self._ended:
            return []
        self._ended = True
        event = failure_event(error, self.request, response_id=self.response_id, created_at=self.created_at,
                              model=self.model, sequence_number=self._seq, output=self._items)
        self._seq += 1
        return [event]


class ResponsesOverChat:
    """A provider's chat stream (``Provider.chat_stream`` with include_usage) re-told as Responses events,
    with the ``feed(event, data)`` / ``finish()`` / ``usage`` interface ``workers.endpoints`` streams."""

    def __init__(self, chat, responses: ChatStreamToResponses):
        self.chat = chat
        self.responses = responses

    @property
    def usage(self) -> dict | None:
        return self.chat.usage

    def feed(self, event: str | None, data: str) -> list[Event]:
        return [pair for chunk in self.chat.feed(event, data) for pair in self.responses.feed(chunk)]

    def finish(self) -> list[Event]:
        return [pair for chunk in self.chat.finish() for pair in self.responses.feed(chunk)] + self.responses.finish()

    def fail(self, error: GatewayError) -> list[Event]:
        return self.responses.fail(error)
