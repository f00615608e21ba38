"""Output half of the sandbox provider: the answer model, its JSON bodies, its SSE events, the stream runner.

Every stream is an HTTP/1.1 chunked body (one chunk per SSE event, written and flushed at once), so
a finished stream ends with the zero-length chunk and the connection stays reusable, while an
injected `fail_after` drop is visibly incomplete to any client (an "incomplete chunked read").

Events are tagged so the runner knows where the directives act:
    start    the role chunk / message_start / response.created (sent right after the headers)
    head     ping, content_block_start, the tool call header chunk, a signature_delta, the Responses
             events that open or close an item or part
    content  a word of text or thinking, or a fragment of tool arguments: what `fail_after`/`error_after` count
    tail     finish chunk, usage chunk, [DONE], the last content_block_stop, message_delta, message_stop,
             response.completed / response.incomplete
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass

PIECE_RE = re.compile(r"\S+\s*")
STREAM_ERROR = "sandbox injected stream error"


@dataclass
class Answer:
    """What a model call answers, in any wire format, streamed or not."""

    id: str
    model: object
    prompt_tokens: int
    completion_tokens: int
    text: str = ""
    finish: str = "end"  # end | length | stop_sequence | tool
    stop: str | None = None  # the stop sequence that matched
    tool_id: str | None = None
    tool_name: str | None = None
    arguments: str = ""  # the tool call's arguments as a JSON string (a custom tool's input: any string)
    created: int = 0
    tool_kind: str = "function"  # function | custom (Responses API)
    tool_namespace: str | None = None  # the Responses `namespace` tool the called tool belongs to
    reasoning: str | None = None  # the model's thought when the request asked for reasoning ("" if not shown)
    reasoning_tokens: int = 0

    def think(self, thought: str, shown: bool = True) -> None:
        self.reasoning = thought if shown else ""
        self.reasoning_tokens = len(thought.split())

    def call(self, tool_id: str, tool, arguments: str) -> None:
        """Make this answer a call of `tool` (a sandbox.provider_script.Tool)."""
        self.tool_id, self.tool_name, self.finish = tool_id, tool.name, "tool"
        self.tool_kind, self.tool_namespace, self.arguments = tool.kind, tool.namespace, arguments
        self.completion_tokens = len(arguments.split()) + self.reasoning_tokens

    @property
    def signature(self) -> str:
        """A deterministic stand-in for Anthropic's thinking signature (opaque to clients)."""
        return base64.b64encode(hashlib.sha256((self.reasoning or "").encode()).digest()).decode()

    @property
    def openai_finish(self) -> str:
        return {"length": "length", "tool": "tool_calls"}.get(self.finish, "stop")

    @property
    def anthropic_stop(self) -> str:
        return {"end": "end_turn", "length": "max_tokens", "tool": "tool_use"}.get(self.finish, self.finish)

    def usage(self) -> dict:
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                 "total_tokens": self.prompt_tokens + self.completion_tokens}
        if self.reasoning is not None:  # openai-python types/completion_usage.py: CompletionTokensDetails
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage


# A word the streamer replaces by the time it sends the event (for latency benchmarks).
SEND_TIME_MARK = b"@@SENT@@"


def pieces(text: str) -> list[str]:
    """The reply split into words, each keeping the whitespace after it (so they join back exactly)."""
    return PIECE_RE.findall(text)


def fragments(text: str, count: int = 3) -> list[str]:
    """`text` cut into `count` consecutive fragments of about equal length (none empty if it is long enough)."""
    cuts = [len(text) * i // count for i in range(count + 1)]
    return [text[cuts[i]:cuts[i + 1]] for i in range(count) if cuts[i] < cuts[i + 1]]


# --- whole answers (JSON bodies) -------------------------------------------------------------

def openai_chat_payload(answer: Answer) -> dict:
    message = {"role": "assistant", "content": answer.text, "refusal": None}
    if answer.tool_name is not None:
        message["content"] = None
        message["tool_calls"] = [{"id": answer.tool_id, "type": "function",
                                  "function": {"name": answer.tool_name, "arguments": answer.arguments}}]
    return {
        "id": answer.id, "object": "chat.completion", "created": answer.created,
        "model": answer.model, "system_fingerprint": "sandbox",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.openai_finish}],
        "usage": answer.usage(),
    }


def anthropic_payload(answer: Answer) -> dict:
    content = []
    if answer.reasoning is not None:  # anthropic-sdk-python types/thinking_block.py
        content.append({"type": "thinking", "thinking": answer.reasoning, "signature": answer.signature})
    if answer.tool_name is None:
        content.append({"type": "text", "text": answer.text})
    else:
        content.append({"type": "tool_use", "id": answer.tool_id, "name": answer.tool_name,
                        "input": json.loads(answer.arguments)})
    return {
        "id": answer.id, "type": "message", "role": "assistant", "model": answer.model, "content": content,
        "stop_reason": answer.anthropic_stop, "stop_sequence": answer.stop,
        "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens},
    }


def completion_payload(answer: Answer) -> dict:
    return {
        "id": answer.id, "object": "text_completion", "created": answer.created, "model": answer.model,
        "choices": [{"text": answer.text, "index": 0, "logprobs": None, "finish_reason": answer.openai_finish}],
        "usage": answer.usage(),
    }


# --- streamed answers (SSE events) --------------------------------------------------------------

def _data(payload) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_event(name: str, payload) -> bytes:
    return f"event: {name}\n".encode() + _data(payload)


DONE = b"data: [DONE]\n\n"


def openai_error_event() -> bytes:
    return _data({"error": {"message": STREAM_ERROR, "type": "server_error", "param": None,
                            "code": "sandbox_injected"}})


def anthropic_error_event() -> bytes:
    return sse_event("error", {"type": "error", "error": {"type": "overloaded_error", "message": STREAM_ERROR}})


def chat_events(answer: Answer, include_usage: bool) -> list[tuple[str, bytes]]:
    """OpenAI chat.completion.chunk events for `answer`."""
    def chunk(delta: dict, finish=None) -> bytes:
        payload = {
            "id": answer.id, "object": "chat.completion.chunk", "created": answer.created, "model": answer.model,
            "system_fingerprint": "sandbox",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return _data(payload)

    if answer.tool_name is None:
        events = [("start", chunk({"role": "assistant", "content": ""}))]
        events += [("content", chunk({"content": piece})) for piece in pieces(answer.text)]
    else:
        header = {"index": 0, "id": answer.tool_id, "type": "function",
                  "function": {"name": answer.tool_name, "arguments": ""}}
        events = [("start", chunk({"role": "assistant", "content": None})),
                  ("head", chunk({"tool_calls": [header]}))]
        events += [("content", chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
                   for part in fragments(answer.arguments)]
    events.append(("tail", chunk({}, answer.openai_finish)))
    if include_usage:
        events.append(("tail", _data({
            "id": answer.id, "object": "chat.completion.chunk", "created": answer.created, "model": answer.model,
            "system_fingerprint": "sandbox", "choices": [], "usage": answer.usage(),
        })))
    events.append(("tail", DONE))
    return events


def completion_events(answer: Answer, include_usage: bool) -> list[tuple[str, bytes]]:
    """OpenAI legacy text_completion events for `answer` (no role event: silence starts at the headers)."""
    def chunk(text: str, finish=None) -> bytes:
        payload = {"id": answer.id, "object": "text_completion", "created": answer.created, "model": answer.model,
                   "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            payload["usage"] = None
        return _data(payload)

    events = [("content", chunk(piece)) for piece in pieces(answer.text)]
    events.append(("tail", chunk("", answer.openai_finish)))
    if include_usage:
        events.append(("tail", _data({"id": answer.id, "object": "text_completion", "created": answer.created,
                                      "model": answer.model, "choices": [], "usage": answer.usage()})))
    events.append(("tail", DONE))
    return events


def anthropic_events(answer: Answer) -> list[tuple[str, bytes]]:
    """Anthropic Messages stream events for `answer` (docs.claude.com/en/api/messages-streaming)."""
    message = {
        "id": answer.id, "type": "message", "role": "assistant", "model": answer.model, "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": 1},
    }
    events = [("start", sse_event("message_start", {"type": "message_start", "message": message})),
              ("head", sse_event("ping", {"type": "ping"}))]

    def block(index: int, start: dict, deltas: list[dict], last: bool) -> None:
        events.append(("head", sse_event("content_block_start",
                                      {"type": "content_block_start", "index": index, "content_block": start})))
        events.extend(("head" if d["type"] == "signature_delta" else "content",
                       sse_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}))
                      for d in deltas)
        # the last block's stop is where a fault that outlasts the content fires (a "tail" event)
        events.append(("tail" if last else "head",
                       sse_event("content_block_stop", {"type": "content_block_stop", "index": index})))

    index = 0
    if answer.reasoning is not None:  # thinking_delta pieces, then one signature_delta, before the block stops
        # (anthropic-sdk-python types: thinking_delta.py, signature_delta.py; its stream accumulator)
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in pieces(answer.reasoning)]
        block(0, {"type": "thinking", "thinking": "", "signature": ""},
              deltas + [{"type": "signature_delta", "signature": answer.signature}], last=False)
        index = 1
    if answer.tool_name is None:
        block(index, {"type": "text", "text": ""},
              [{"type": "text_delta", "text": piece} for piece in pieces(answer.text)], last=True)
    else:
        block(index, {"type": "tool_use", "id": answer.tool_id, "name": answer.tool_name, "input": {}},
              [{"type": "input_json_delta", "partial_json": part} for part in fragments(answer.arguments)],
              last=True)
    events += [
        ("tail", sse_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": answer.anthropic_stop, "stop_sequence": answer.stop},
            "usage": {"output_tokens": answer.completion_tokens},
        })),
        ("tail", sse_event("message_stop", {"type": "message_stop"})),
    ]
    return events


# --- the runner ---------------------------------------------------------------------------------

def wait_for_close(sock: socket.socket, seconds: float) -> bool:
    """Sleep up to `seconds` watching `sock`; True as soon as the peer has closed it (EOF or reset)."""
    deadline = time.monotonic() + seconds
    # poll, not select: select() refuses descriptors past 1024, which a sandbox serving
    # a thousand open streams (bench.capacity) hands out.
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    while (remaining := deadline - time.monotonic()) > 0:
        if not poller.poll(min(remaining, 1.0) * 1000):
            continue
        try:
            if sock.recv(1, socket.MSG_PEEK) == b"":
                return True
        except OSError:
            return True
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))  # bytes from the client are not a close
    return False


class StreamRun:
    """Write `events` as one SSE response on `handler`, applying the stream directives in `opts`."""

    def __init__(self, handler, events: list[tuple[str, bytes]], error_event, opts: dict,
                 faults: bool, record: dict, lock: threading.Lock):
        """`error_event` is the bytes `error_after` sends, or a function of the number of events sent
        before it (a Responses stream numbers every event)."""
        self.handler = handler
        self.events = events
        self.error_event = error_event
        self.delay = opts.get("chunk_delay_ms", 0) / 1000
        self.silence = opts.get("silence_ms", 0) / 1000
        self.fail_after = opts.get("fail_after") if faults else None
        self.error_after = opts.get("error_after") if faults else None
        self.record = record
        self.lock = lock
        self.chunked = handler.request_version != "HTTP/1.0"

    def run(self) -> None:
        reason = "failed"  # kept only if the sandbox itself breaks mid-stream
        try:
            reason = self._run()
        except OSError:  # BrokenPipe / ConnectionReset: the client went away mid-stream
            reason = "client_closed"
        finally:
            if reason != "completed":
                self.handler.close_connection = True
            with self.lock:
                self.record["ended"], self.record["reason"] = time.time(), reason

    def _run(self) -> str:
        handler = self.handler
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        if self.chunked:
            handler.send_header("Transfer-Encoding", "chunked")
        else:  # an HTTP/1.0 client cannot read chunks: the end of the body is the end of the connection
            handler.close_connection = True
            handler.send_header("Connection", "close")
        handler.end_headers()
        content, silent = 0, self.silence > 0
        for index, (tag, data) in enumerate(self.events):
            if index and self.delay and wait_for_close(handler.connection, self.delay):
                return "client_closed"
            if silent and tag != "start":
                silent = False
                if wait_for_close(handler.connection, self.silence):
                    return "client_closed"
            if tag != "head" and tag != "start":
                # A fault fires after n content events, or at the first tail event if the reply is shorter.
                if self.fail_after is not None and (content >= self.fail_after or tag == "tail"):
                    return "failed"  # no terminating chunk: the client sees the body cut short
                if self.error_after is not None and (content >= self.error_after or tag == "tail"):
                    self._write(self.error_event(index) if callable(self.error_event) else self.error_event)
                    self._end()
                    return "failed"
            self._write(data)
            if tag == "content":
                content += 1
        self._end()
        return "completed"

    def _write(self, data: bytes) -> None:
        if SEND_TIME_MARK in data:  # the benchmark's clock: each marked word becomes its send time
            data = data.replace(SEND_TIME_MARK, b"%.6f" % time.time())
        wfile = self.handler.wfile
        wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        wfile.flush()
        self.record["events_sent"] += 1

    def _end(self) -> None:
        if self.chunked:
            self.handler.wfile.write(b"0\r\n\r\n")
            self.handler.wfile.flush()
