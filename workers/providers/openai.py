"""OpenAI, and any OpenAI-compatible server (vLLM, Ollama, llama.cpp): ``generic``.

The pivot format is OpenAI's own, so requests pass through with the upstream
model id, and answers with the requested name. Streams always ask the upstream
for usage (it feeds the token rate limits); the usage-only chunk reaches the
client only if the client asked for it.

The Responses API (``models[].native_responses_api``: openai models by default)
passes through too, every field and input item as the client sent them but the
model: Codex sends item and tool types (``additional_tools``, ``custom``,
``tool_search``, ``namespace``, ids on items) that a rewrite would break. Its
streams relay the provider's events as they are, the lifecycle events'
``response.model`` aside (``ResponsesRelay``).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import orjson

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


# Events carrying the Response object (openai-python types/responses/response_stream_event.py): the ones
# whose ``response.model`` is the upstream id, and the ones that end the stream.
LIFECYCLE_EVENTS = frozenset({"response.created", "response.queued", "response.in_progress", "response.completed",
                              "response.incomplete", "response.failed"})
ENDING_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponsesRelay:
    """A provider's Responses stream, as (event name, data) pairs to frame for the client: each event
    as the provider sent it, but the Response object in lifecycle events names the requested model.
    ``usage`` comes from the final Response; ``on_created`` is called with the response id before
    ``response.created`` goes out. An ``error`` event, or a stream that stops before an event ended
    it, is a failure: the client gets ``response.failed``, the one failure Codex reads."""

    def __init__(self, requested_model: str, on_created=None):
        self.requested_model = requested_model
        self.on_created = on_created
        self.usage: dict | None = None
        self.ended = False

    def feed(self, event: str | None, data: str) -> list[tuple[str, str]]:
        if event is not None and event not in LIFECYCLE_EVENTS and event != "error":
            return [(event, data)]  # content events go out byte for byte
        try:
            parsed = orjson.loads(data)
        except ValueError:
            raise UpstreamError("The provider sent a stream event that is not JSON.") from None
        if not isinstance(parsed, dict):
            raise UpstreamError("The provider sent a stream event that is not a JSON object.")
        name = event or str(parsed.get("type") or "")
        if name == "error":
            raise UpstreamError(str(parsed.get("message") or "The provider's stream failed."))
        self.ended = self.ended or name in ENDING_EVENTS
        response = parsed.get("response")
        if name not in LIFECYCLE_EVENTS or not isinstance(response, dict):
            return [(name, data)]
        if isinstance(response.get("usage"), dict):
            self.usage = response["usage"]
        if name == "response.created" and self.on_created is not None and isinstance(response.get("id"), str):
            self.on_created(response["id"])
        parsed["response"] = {**response, "model": self.requested_model}
        return [(name, orjson.dumps(parsed).decode())]

    def finish(self) -> list:
        if not self.ended:
            raise UpstreamError("The provider's stream ended before the response was complete.")
        return []


@register
class OpenAIProvider(Provider):
    types = ("openai", "generic")
    native_chat = True

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

    def responses_request(self, body: dict, *, request_id: str) -> UpstreamRequest:
        return UpstreamRequest(self.url("responses"), {**body, "model": self.model.model}, self.headers(request_id))

    def stored_response_request(self, response_id: str, *, request_id: str, method: str) -> UpstreamRequest:
        return UpstreamRequest(self.url(f"responses/{quote(response_id, safe='')}"), None,
                               self.headers(request_id), method=method)
