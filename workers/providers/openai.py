"""OpenAI, and any OpenAI-compatible server (vLLM, Ollama, llama.cpp): ``generic``.

The pivot format is OpenAI's own, so requests pass through with the upstream
model id, and answers with the requested name. Streams always ask the upstream
for usage (it feeds the token rate limits); the usage-only chunk reaches the
client only if the client asked for it.
"""

from __future__ import annotations

import json

from shared.errors import UpstreamError
from workers.providers.base import Provider, register
from workers.upstream import UpstreamRequest


class OpenAIStream:
    """OpenAI-format stream events (chat chunks or legacy completion chunks), passed on."""

    def __init__(self, requested_model: str, include_usage: bool):
        self.requested_model = requested_model
        self.include_usage = include_usage
        self.usage: dict | None = None

    def feed(self, event: str | None, data: str) -> list[dict]:
        if data.strip() == "[DONE]":
            return []
        try:
            chunk = json.loads(data)
        except ValueError:
            raise UpstreamError("The provider sent a stream event that is not JSON.") from None
        if "error" in chunk:
            error = chunk["error"]
            raise UpstreamError(str(error.get("message") if isinstance(error, dict) else error))
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if not chunk.get("choices") and chunk.get("usage") and not self.include_usage:
            return []  # the usage-only chunk the gateway asked for itself
        if not self.include_usage and "usage" in chunk:
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        return [{**chunk, "model": self.requested_model}]

    def finish(self) -> list[dict]:
        return []


@register
class OpenAIProvider(Provider):
    types = ("openai", "generic")

    def headers(self, request_id: str) -> dict[str, str]:
        headers = {"X-Request-Id": request_id}
        if self.model.api_key:
            headers["Authorization"] = f"Bearer {self.model.api_key}"
        return headers

    def _body(self, body: dict, stream: bool) -> dict:
        payload = {**body, "model": self.model.model}
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        else:
            payload.pop("stream", None)
            payload.pop("stream_options", None)
        return payload

    def chat_request(self, body: dict, *, request_id: str, stream: bool = False) -> UpstreamRequest:
        return UpstreamRequest(self.url("chat/completions"), self._body(body, stream), self.headers(request_id))

    def chat_response(self, data: dict, *, requested_model: str) -> dict:
        return {**data, "model": requested_model}

    def chat_stream(self, *, requested_model: str, include_usage: bool) -> OpenAIStream:
        return OpenAIStream(requested_model, include_usage)

    def embeddings_request(self, body: dict, *, request_id: str) -> UpstreamRequest:
        return UpstreamRequest(self.url("embeddings"), {**body, "model": self.model.model}, self.headers(request_id))

    def embeddings_response(self, data: dict, *, requested_model: str) -> dict:
        return {**data, "model": requested_model}

    def completions_request(self, body: dict, *, request_id: str, stream: bool = False) -> UpstreamRequest:
        return UpstreamRequest(self.url("completions"), self._body(body, stream), self.headers(request_id))

    def completions_response(self, data: dict, *, requested_model: str) -> dict:
        return {**data, "model": requested_model}

    def completions_stream(self, *, requested_model: str, include_usage: bool) -> OpenAIStream:
        return OpenAIStream(requested_model, include_usage)
