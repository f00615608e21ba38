"""Anthropic's Messages API, behind the OpenAI Chat Completions interface."""

from __future__ import annotations

import time

from workers.providers.base import Provider, register
from workers.translate.anthropic import anthropic_response_to_chat, chat_request_to_anthropic
from workers.upstream import UpstreamRequest

ANTHROPIC_VERSION = "2023-06-01"


@register
class AnthropicProvider(Provider):
    types = ("anthropic",)

    def headers(self, request_id: str) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION, "X-Request-Id": request_id}
        if self.model.api_key:
            headers["x-api-key"] = self.model.api_key
        return headers

    def messages_url(self) -> str:
        # Accept both "https://api.anthropic.com" and ".../v1" as base_url.
        base = self.model.base_url
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    def chat_request(self, body: dict, *, request_id: str) -> UpstreamRequest:
        payload = chat_request_to_anthropic(
            body, upstream_model=self.model.model, default_max_tokens=self.model.max_output_tokens
        )
        return UpstreamRequest(self.messages_url(), payload, self.headers(request_id))

    def chat_response(self, data: dict, *, requested_model: str) -> dict:
        return anthropic_response_to_chat(data, requested_model=requested_model, created=int(time.time()))
