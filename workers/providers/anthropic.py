"""Anthropic's Messages API: native for Anthropic clients, translated for OpenAI ones.

An Anthropic client's request is passed through: its body untouched but ``model``,
with its ``anthropic-version`` and ``anthropic-beta`` headers (the job's
``client_headers``), so Anthropic, not the gateway, judges every field and beta.
Token counting (``/v1/messages/count_tokens``) goes the same way.
"""

from __future__ import annotations

import json
import time

from shared.errors import UpstreamError
from workers.providers.base import Provider, register
from workers.translate import reasoning
from workers.translate.anthropic import (
    AnthropicStreamToChat,
    anthropic_response_to_chat,
    chat_request_to_anthropic,
)
from workers.translate.refusals import unsupported_for
from workers.upstream import UpstreamRequest

ANTHROPIC_VERSION = "2023-06-01"
# The client's headers a passthrough forwards (the API puts only these in a job).
FORWARDED = ("anthropic-version", "anthropic-beta")
_unsupported = unsupported_for("Anthropic models")


def _event_data(data: str) -> dict:
    try:
        return json.loads(data)
    except ValueError:
        raise UpstreamError("The provider sent a stream event that is not JSON.") from None


class ChatStream:
    """Anthropic events -> OpenAI chunks."""

    def __init__(self, requested_model: str, include_usage: bool):
        self._translator = AnthropicStreamToChat(requested_model, int(time.time()), include_usage)

    @property
    def usage(self) -> dict | None:
        return self._translator.usage

    def feed(self, event: str | None, data: str) -> list[dict]:
        parsed = _event_data(data)
        return self._translator.feed(event or parsed.get("type", ""), parsed)

    def finish(self) -> list[dict]:
        return []


class NativeStream:
    """Anthropic events passed on to an Anthropic client, under the requested model name."""

    def __init__(self, requested_model: str):
        self.requested_model = requested_model
        self.usage: dict | None = None

    def feed(self, event: str | None, data: str) -> list[tuple[str, dict]]:
        parsed = _event_data(data)
        name = event or parsed.get("type", "")
        if name == "message_start":
            message = parsed.get("message") or {}
            parsed = {**parsed, "message": {**message, "model": self.requested_model}}
            self.usage = dict(message.get("usage") or {})
        elif name == "message_delta" and self.usage is not None:
            self.usage.update(parsed.get("usage") or {})
        elif name == "error":
            raise UpstreamError((parsed.get("error") or {}).get("message") or "The provider's stream failed.")
        return [(name, parsed)]

    def finish(self) -> list:
        return []


@register
class AnthropicProvider(Provider):
    types = ("anthropic",)
    native_messages = True

    def headers(self, request_id: str, client_headers: dict | None = None) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION, "X-Request-Id": request_id}
        for name in FORWARDED:
            value = (client_headers or {}).get(name)
            if isinstance(value, str) and value:
                headers[name] = value
        if self.model.api_key:
            headers["x-api-key"] = self.model.api_key
        return headers

    def messages_url(self, path: str = "messages") -> str:
        # Accept both "https://api.anthropic.com" and ".../v1" as base_url.
        base = self.model.base_url
        return f"{base}/{path}" if base.endswith("/v1") else f"{base}/v1/{path}"

    def chat_request(self, body: dict, *, request_id: str, stream: bool = False) -> UpstreamRequest:
        style = self.model.reasoning_control
        if style == "none":
            if reasoning.effort(body.get("reasoning_effort")) not in (None, "none"):
                raise _unsupported("reasoning_effort", f"model '{self.model.name}' has no reasoning control "
                                                       "(its 'reasoning' setting is none)")
            body = {k: v for k, v in body.items() if k != "reasoning_effort"}
            style = "budget"
        payload = chat_request_to_anthropic(
            body, upstream_model=self.model.model, default_max_tokens=self.model.max_output_tokens, thinking=style
        )
        if stream:
            payload["stream"] = True
        return UpstreamRequest(self.messages_url(), payload, self.headers(request_id))

    def chat_response(self, data: dict, *, requested_model: str) -> dict:
        return anthropic_response_to_chat(data, requested_model=requested_model, created=int(time.time()))

    def chat_stream(self, *, requested_model: str, include_usage: bool) -> ChatStream:
        return ChatStream(requested_model, include_usage)

    def messages_request(self, body: dict, *, request_id: str, stream: bool = False,
                         client_headers: dict | None = None) -> UpstreamRequest:
        payload = {**body, "model": self.model.model}
        if stream:
            payload["stream"] = True
        else:
            payload.pop("stream", None)
        return UpstreamRequest(self.messages_url(), payload, self.headers(request_id, client_headers))

    def count_tokens_request(self, body: dict, *, request_id: str,
                             client_headers: dict | None = None) -> UpstreamRequest:
        return UpstreamRequest(self.messages_url("messages/count_tokens"), {**body, "model": self.model.model},
                               self.headers(request_id, client_headers))

    def messages_response(self, data: dict, *, requested_model: str) -> dict:
        return {**data, "model": requested_model}

    def messages_stream(self, *, requested_model: str) -> NativeStream:
        return NativeStream(requested_model)
