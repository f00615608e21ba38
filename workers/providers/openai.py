"""OpenAI, and any OpenAI-compatible server (vLLM, Ollama, llama.cpp): ``generic``."""

from __future__ import annotations

from workers.providers.base import Provider, register
from workers.upstream import UpstreamRequest


@register
class OpenAIProvider(Provider):
    types = ("openai", "generic")

    def headers(self, request_id: str) -> dict[str, str]:
        headers = {"X-Request-Id": request_id}
        if self.model.api_key:
            headers["Authorization"] = f"Bearer {self.model.api_key}"
        return headers

    def chat_request(self, body: dict, *, request_id: str) -> UpstreamRequest:
        return UpstreamRequest(self.url("chat/completions"), {**body, "model": self.model.model},
                               self.headers(request_id))

    def chat_response(self, data: dict, *, requested_model: str) -> dict:
        return {**data, "model": requested_model}
