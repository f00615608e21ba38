"""The client's side of a job: its endpoint's wire format, whatever the provider speaks.

Each endpoint turns the client's request into the provider adapter's call and
the answer back into the client's format, whole or streamed. Streams are framed
as server-sent events here (``shared.sse``) and handed to ``emit`` one frame at
a time, so the API relays bytes without touching them.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from shared.jobs import CHAT_COMPLETIONS, COMPLETIONS, EMBEDDINGS, MESSAGES, JobRequest
from shared.sse import ANTHROPIC, OPENAI, done, frame
from workers.providers.base import Provider
from workers.translate.anthropic_client_request import messages_request_to_chat
from workers.translate.anthropic_client_response import chat_response_to_messages
from workers.translate.anthropic_client_stream import ChatStreamToMessages
from workers.upstream import UpstreamClient

Emit = Callable[[bytes], None]


@dataclass
class Outcome:
    status: int = 200
    body: bytes = b""
    usage: dict | None = None  # OpenAI- or Anthropic-shaped, as the answer reported it
    attempts: int = 0
    upstream_seconds: float = 0.0
    retry_reasons: list[str] = field(default_factory=list)


def _whole(provider_call, client: UpstreamClient, request: JobRequest, to_client) -> Outcome:
    result = client.post_json(provider_call, deadline=request.deadline)
    answer = to_client(result.data)
    return Outcome(200, orjson.dumps(answer), answer.get("usage"), result.attempts,
                   round(result.seconds, 4), result.retry_reasons)


def _streamed(provider_call, client: UpstreamClient, request: JobRequest, translator, frames, emit: Emit,
              closing: list[bytes]) -> Outcome:
    stream = client.open_stream(provider_call, deadline=request.deadline)
    for event, data in stream.events():
        for item in translator.feed(event, data):
            for piece in frames(item):
                emit(piece)
    for item in translator.finish():
        for piece in frames(item):
            emit(piece)
    for piece in closing:
        emit(piece)
    return Outcome(usage=translator.usage, attempts=stream.attempts,
                   upstream_seconds=round(time.monotonic() - stream.started, 4), retry_reasons=stream.retry_reasons)


def serve(provider: Provider, client: UpstreamClient, request: JobRequest) -> Outcome:
    body, rid, name = request.body, request.request_id, request.requested_model
    if request.endpoint == CHAT_COMPLETIONS:
        return _whole(provider.chat_request(body, request_id=rid), client, request,
                      lambda data: provider.chat_response(data, requested_model=name))
    if request.endpoint == MESSAGES:
        if provider.native_messages:
            return _whole(provider.messages_request(body, request_id=rid), client, request,
                          lambda data: provider.messages_response(data, requested_model=name))
        chat = messages_request_to_chat(body, upstream_model=provider.model.model)
        return _whole(provider.chat_request(chat, request_id=rid), client, request,
                      lambda data: chat_response_to_messages(provider.chat_response(data, requested_model=name),
                                                             requested_model=name))
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
        return _streamed(provider.chat_request(body, request_id=rid, stream=True), client, request,
                         provider.chat_stream(requested_model=name, include_usage=include_usage),
                         openai_frames, emit, [done(OPENAI)])
    if request.endpoint == COMPLETIONS:
        return _streamed(provider.completions_request(body, request_id=rid, stream=True), client, request,
                         provider.completions_stream(requested_model=name, include_usage=include_usage),
                         openai_frames, emit, [done(OPENAI)])
    if request.endpoint == MESSAGES:
        anthropic_frames = lambda pair: [frame(ANTHROPIC, pair[1], pair[0])]  # noqa: E731
        if provider.native_messages:
            return _streamed(provider.messages_request(body, request_id=rid, stream=True), client, request,
                             provider.messages_stream(requested_model=name), anthropic_frames, emit, [])
        chat = messages_request_to_chat(body, upstream_model=provider.model.model)
        translator = _ChatToMessages(provider.chat_stream(requested_model=name, include_usage=True), name,
                                     f"msg_{request.job_id}")
        return _streamed(provider.chat_request(chat, request_id=rid, stream=True), client, request,
                         translator, anthropic_frames, emit, [])
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
