"""The client's side of a job: its endpoint's wire format, whatever the provider speaks.

Each endpoint turns the client's request into the provider adapter's call and
the answer back into the client's format, whole or streamed. Streams are framed
as server-sent events here (``shared.sse``) and handed to ``emit`` one frame at
a time, so the API relays bytes without touching them.

A request translated to another format first loses what the model's
``drop_params`` lists (``workers.translate.drop_params``); what was dropped is
the ``Outcome``'s ``dropped``, and a stream's first chunk carries it too
(``first_meta``), so the API can name it in a header before it commits.
Passthrough (a provider speaking the client's own format) drops nothing.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from shared.jobs import CHAT_COMPLETIONS, COMPLETIONS, COUNT_TOKENS, EMBEDDINGS, MESSAGES, JobRequest
from shared.replies import DROPPED_PARAMS
from shared.sse import ANTHROPIC, OPENAI, done, frame
from workers.providers.base import Provider
from workers.translate.anthropic_client_request import translate_messages_request
from workers.translate.anthropic_client_response import chat_response_to_messages
from workers.translate.anthropic_client_stream import ChatStreamToMessages
from workers.translate.drop_params import without_dropped
from workers.upstream import UpstreamClient

# emit(data) hands one framed chunk to the reply stream; emit(data, meta) the first one with facts the
# API needs before it commits the stream (workers.jobs.Emitter).
Emit = Callable[..., None]


@dataclass
class Outcome:
    status: int = 200
    body: bytes = b""
    usage: dict | None = None  # OpenAI- or Anthropic-shaped, as the answer reported it
    attempts: int = 0
    upstream_seconds: float = 0.0
    retry_reasons: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # what drop_params removed from the request
    served_by: str = ""  # "<model>/<deployment>" (workers.deployments)


def first_meta(dropped: list[str]) -> dict | None:
    """What a stream's first chunk tells the API: the dropped params, if any."""
    return {DROPPED_PARAMS: dropped} if dropped else None


def _whole(provider_call, client: UpstreamClient, request: JobRequest, to_client,
           dropped: list[str] | None = None) -> Outcome:
    result = client.post_json(provider_call, deadline=request.deadline)
    answer = to_client(result.data)
    return Outcome(200, orjson.dumps(answer), answer.get("usage"), result.attempts,
                   round(result.seconds, 4), result.retry_reasons, list(dropped or ()))


def _streamed(provider_call, client: UpstreamClient, request: JobRequest, translator, frames, emit: Emit,
              closing: list[bytes], dropped: list[str] | None = None) -> Outcome:
    stream = client.open_stream(provider_call, deadline=request.deadline)
    meta = first_meta(dropped or [])

    def out(piece: bytes) -> None:
        nonlocal meta
        if meta is None:
            emit(piece)
        else:
            emit(piece, meta)
            meta = None

    for event, data in stream.events():
        for item in translator.feed(event, data):
            for piece in frames(item):
                out(piece)
    for item in translator.finish():
        for piece in frames(item):
            out(piece)
    for piece in closing:
        out(piece)
    return Outcome(usage=translator.usage, attempts=stream.attempts,
                   upstream_seconds=round(time.monotonic() - stream.started, 4), retry_reasons=stream.retry_reasons,
                   dropped=list(dropped or ()))


def translated_chat(provider: Provider, body: dict) -> tuple[dict, list[str]]:
    """A chat request for the provider: untouched where it speaks chat itself, else without what the
    model's drop_params lists (the provider's translation refuses the rest)."""
    if provider.native_chat:
        return body, []
    kept, dropped = without_dropped(body, provider.model.drop_params)
    return kept, dropped.paths


def _messages_to_chat(provider: Provider, body: dict) -> tuple[dict, list[str]]:
    model = provider.model
    translation = translate_messages_request(body, upstream_model=model.model, drop=model.drop_params,
                                             reasoning=model.reasoning_control != "none")
    return translation.body, translation.dropped


def serve(provider: Provider, client: UpstreamClient, request: JobRequest) -> Outcome:
    body, rid, name = request.body, request.request_id, request.requested_model
    if request.endpoint == CHAT_COMPLETIONS:
        chat, dropped = translated_chat(provider, body)
        return _whole(provider.chat_request(chat, request_id=rid), client, request,
                      lambda data: provider.chat_response(data, requested_model=name), dropped)
    if request.endpoint == MESSAGES:
        if provider.native_messages:
            return _whole(provider.messages_request(body, request_id=rid, client_headers=request.client_headers),
                          client, request, lambda data: provider.messages_response(data, requested_model=name))
        chat, dropped = _messages_to_chat(provider, body)
        return _whole(provider.chat_request(chat, request_id=rid), client, request,
                      lambda data: chat_response_to_messages(provider.chat_response(data, requested_model=name),
                                                             requested_model=name), dropped)
    if request.endpoint == COUNT_TOKENS:
        # Only Anthropic models get the job (the API estimates for the others): their own count, as it is.
        return _whole(provider.count_tokens_request(body, request_id=rid, client_headers=request.client_headers),
                      client, request, lambda data: data)
    if request.endpoint == EMBEDDINGS:
        # Providers are asked for floats; base64 (the OpenAI SDK's default) is made here,
        # so every provider type answers it alike.
        wants_base64 = body.get("encoding_format") == "base64"
        floats = {k: v for k, v in body.items() if k != "encoding_format"}
        return _whole(provider.embeddings_request(floats, request_id=rid), client, request,
                      lambda data: _encoded(provider.embeddings_response(data, requested_model=name), wants_base64))
    if request.endpoint == COMPLETIONS:
        return _whole(provider.completions_request(body, request_id=rid), client, request,
                      lambda data: provider.completions_response(data, requested_model=name))
    raise ValueError(f"unknown endpoint {request.endpoint!r}")


def _encoded(answer: dict, base64_wanted: bool) -> dict:
    if base64_wanted:
        for item in answer.get("data") or []:
            vector = item.get("embedding")
            if isinstance(vector, list):
                item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return answer


def serve_stream(provider: Provider, client: UpstreamClient, request: JobRequest, emit: Emit) -> Outcome:
    body, rid, name = request.body, request.request_id, request.requested_model
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    openai_frames = lambda chunk: [frame(OPENAI, chunk)]  # noqa: E731
    if request.endpoint == CHAT_COMPLETIONS:
        chat, dropped = translated_chat(provider, body)
        return _streamed(provider.chat_request(chat, request_id=rid, stream=True), client, request,
                         provider.chat_stream(requested_model=name, include_usage=include_usage),
                         openai_frames, emit, [done(OPENAI)], dropped)
    if request.endpoint == COMPLETIONS:
        return _streamed(provider.completions_request(body, request_id=rid, stream=True), client, request,
                         provider.completions_stream(requested_model=name, include_usage=include_usage),
                         openai_frames, emit, [done(OPENAI)])
    if request.endpoint == MESSAGES:
        anthropic_frames = lambda pair: [frame(ANTHROPIC, pair[1], pair[0])]  # noqa: E731
        if provider.native_messages:
            call = provider.messages_request(body, request_id=rid, stream=True, client_headers=request.client_headers)
            return _streamed(call, client, request, provider.messages_stream(requested_model=name), anthropic_frames,
                             emit, [])
        chat, dropped = _messages_to_chat(provider, body)
        translator = _ChatToMessages(provider.chat_stream(requested_model=name, include_usage=True), name,
                                     f"msg_{request.job_id}")
        return _streamed(provider.chat_request(chat, request_id=rid, stream=True), client, request,
                         translator, anthropic_frames, emit, [], dropped)
    raise ValueError(f"endpoint {request.endpoint!r} does not stream")


class _ChatToMessages:
    """A provider's chat stream, re-told as Anthropic events."""

    def __init__(self, chat, requested_model: str, message_id: str):
        self.chat = chat
        self.messages = ChatStreamToMessages(requested_model, message_id)

    @property
    def usage(self) -> dict | None:
        return self.chat.usage

    def feed(self, event: str | None, data: str) -> list[tuple[str, dict]]:
        return [pair for chunk in self.chat.feed(event, data) for pair in self.messages.feed(chunk)]

    def finish(self) -> list[tuple[str, dict]]:
        return [pair for chunk in self.chat.finish() for pair in self.messages.feed(chunk)] + self.messages.finish()
