"""The worker's OpenAI answers, re-told in the formats GitLab and its IDEs read.

Each follows GitLab's own AI gateway (read at eee38f6f45 of a mirror of
gitlab-org/modelops/applied-ml/code-suggestions/ai-assist; ../shared/duo-protocol.md 3):

- code completion, whole: ``SuggestionsResponse`` (api/v2/code/typing.py), ``choices[].text``;
  streamed: the raw text, no framing (``_handle_stream`` in api/v2/code/completions.py);
- code generation, whole: ``choices`` with ``metadata.model`` (api/v3/code/completions.py); v3
  streamed: raw text; v4 streamed: SSE ``stream_start`` / ``content_chunk`` / ``stream_end`` with
  ``X-Streaming-Format: sse`` (api/v4/code/suggestions.py, typing.py);
- Duo Chat: NDJSON events, ``final_answer_delta`` and ``error``, one whole JSON object per line
  (api/v2/chat/agent.py); GitLab finds each with ``/(\\{.*\\})\\n/`` (ee/lib/gitlab/duo/chat/
  step_executor.rb), so a line never holds a raw newline and is never split across lines;
- slash commands: the raw text streamed, or a JSON string whole (api/v1/prompts/invoke.py);
  GitLab joins the streamed pieces into the answer (ee/lib/gitlab/llm/ai_gateway/client.rb#stream).

What reads them: code suggestions go through GitLab to the IDE's GitLab Language Server unchanged
(Workhorse's sendurl), which reads ``SuggestionResponse``: ``choices[].text``, ``model`` (``lang``,
``engine``, ``name``), the HTTP status, ``error`` (gitlab-org/editor-extensions/gitlab-lsp,
suggestion_client/suggestion_client.ts; its direct connection, suggestion/direct_connection_client.ts,
POSTs ``{base_url}/v2/completions`` and on any failure goes back through GitLab). GitLab itself reads
only ``choices[0].text`` (the health check's test completion: ee/lib/gitlab/llm/ai_gateway/
code_suggestions_client.rb) and parses Duo Chat's events (above).

Raw text streams carry no keep-alive and no error text, which would become part of the code or
the answer: a failure after the first chunk closes the connection instead.
"""

from __future__ import annotations

import time

import orjson

from api.streaming import StreamShape
from shared.duo_prompts import language_of
from shared.errors import ContextLengthExceeded, GatewayError
from shared.jobs import COMPLETIONS
from shared.sse import SSEParser

NDJSON = "application/x-ndjson; charset=utf-8"
TOO_LONG = "prompt is too long"  # what GitLab looks for in a chat error (Anthropic's own words)
ENGINE = "ai-gateway"  # GitLab shows model.engine nowhere; its IDEs may send it back as telemetry


def answer_text(endpoint: str, body: bytes) -> tuple[str, str | None]:
    """The text of a whole OpenAI answer (completion or chat) and its finish reason."""
    try:
        data = orjson.loads(body)
        choice = (data.get("choices") or [{}])[0]
    except (ValueError, AttributeError, IndexError, TypeError):
        return "", None
    if endpoint == COMPLETIONS:
        text = choice.get("text")
    else:
        text = (choice.get("message") or {}).get("content")
    return (text if isinstance(text, str) else ""), choice.get("finish_reason")


def model_info(model_name: str, file_name: str | None = None) -> dict:
    return {"engine": ENGINE, "name": model_name, "lang": language_of(file_name).lower()}


def completion_response(text: str, model_name: str, file_name: str | None) -> dict:
    """``SuggestionsResponse`` (api/v2/code/typing.py); no text, no choices, as GitLab's gateway answers."""
    choices = [{"text": text, "index": 0, "finish_reason": "length"}] if text else []
    return {"id": "id", "model": {**model_info(model_name, file_name), "tokens_consumption_metadata": None,
                                  "region": "local"},
            "experiments": [], "object": "text_completion", "created": int(time.time()), "choices": choices,
            "metadata": {"enabled_feature_flags": []}}


def generation_response(text: str, model_name: str, file_name: str | None) -> dict:
    """The v3/v4 whole answer (code_suggestions/handler.py, api/v4/code/typing.py)."""
    model = model_info(model_name, file_name)
    return {"choices": [{"text": text, "index": 0, "finish_reason": "length"}],
            "metadata": {"model": model, "timestamp": int(time.time()), "enabled_feature_flags": [],
                         "region": "local"},
            "model": model}


class _Deltas:
    """The text of the worker's OpenAI stream chunks (chat ``delta.content`` or completion ``text``),
    as each chunk's whole events come in, and the last finish reason seen."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.parser = SSEParser()
        self.finish_reason: str | None = None

    def texts(self, chunk: bytes) -> list[str]:
        found = []
        for _, data in self.parser.feed(chunk):
            if data == "[DONE]":
                continue
            try:
                choice = (orjson.loads(data).get("choices") or [None])[0]
            except (ValueError, AttributeError, TypeError):
                continue
            if not isinstance(choice, dict):
                continue
            text = choice.get("text") if self.endpoint == COMPLETIONS else (choice.get("delta") or {}).get("content")
            if isinstance(text, str) and text:
                found.append(text)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return found


class RawText(StreamShape):
    """The model's text and nothing else (code completion, v3 generation, slash commands)."""

    def __init__(self, endpoint: str):
        self.deltas = _Deltas(endpoint)

    def chunk(self, body: bytes) -> bytes:
        return "".join(self.deltas.texts(body)).encode()


class CodeSuggestionEvents(StreamShape):
    """v4 code generation's SSE: ``stream_start``, a ``content_chunk`` per text, ``stream_end``. The
    Language Server reads the stream as events only when ``X-Streaming-Format`` is ``sse`` (and as raw
    text otherwise: gitlab-lsp's api.ts, its code suggestions stream), so the header is not optional."""

    headers = {"X-Streaming-Format": "sse"}

    def __init__(self, endpoint: str, model_name: str, file_name: str | None):
        self.deltas = _Deltas(endpoint)
        self.start: bytes | None = _event("stream_start", {"metadata": {
            "model": model_info(model_name, file_name), "timestamp": int(time.time()),
            "enabled_feature_flags": [], "region": "local"}})

    def chunk(self, body: bytes) -> bytes:
        out = [self.start] if self.start is not None else []
        self.start = None
        out += [_event("content_chunk", {"choices": [{"delta": {"content": text}, "index": 0}]})
                for text in self.deltas.texts(body)]
        return b"".join(out)

    def end(self) -> bytes:
        return (self.start or b"") + b"event: stream_end\ndata: null\n\n"


def _event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class ChatEvents(StreamShape):
    """Duo Chat's NDJSON: a ``final_answer_delta`` line per text, the last one with the finish
    reason; a failure is an ``error`` line GitLab shows as the answer's failure."""

    content_type = NDJSON

    def __init__(self, endpoint: str):
        self.deltas = _Deltas(endpoint)

    def chunk(self, body: bytes) -> bytes:
        return b"".join(_line("final_answer_delta", {"text": text, "finish_reason": None})
                        for text in self.deltas.texts(body))

    def end(self) -> bytes:
        return _line("final_answer_delta", {"text": "", "finish_reason": self.deltas.finish_reason or "stop"})

    def failure(self, error: GatewayError) -> bytes | None:
        return error_line(error)


def whole_chat_answer(text: str) -> bytes:
    """A chat answer that came whole (the worker streams chat jobs: an answer with no text)."""
    return (_line("final_answer_delta", {"text": text, "finish_reason": None}) if text else b"") + \
        _line("final_answer_delta", {"text": "", "finish_reason": "stop"})


def error_line(error: GatewayError) -> bytes:
    """GitLab retries a ``retryable`` error step (at most twice) and shows a message holding "prompt is
    too long" as such (ee/lib/gitlab/duo/chat/step_executor.rb, agent_events/error.rb): so a context
    window exceeded says those words whatever the provider's (OpenAI's "maximum context length")."""
    message = error.message
    if isinstance(error, ContextLengthExceeded) and TOO_LONG not in message:
        message = f"{TOO_LONG}: {message}"
    return _line("error", {"message": message, "retryable": bool(error.should_retry)})


def _line(kind: str, data: dict) -> bytes:
    return orjson.dumps({"type": kind, "data": data}) + b"\n"  # orjson escapes every newline inside
