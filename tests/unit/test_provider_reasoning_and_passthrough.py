"""The provider adapters' side of issue 15: an Anthropic client's headers forwarded (only the allow-listed
ones), token counting's call, and the model's reasoning control choosing what reasoning_effort becomes."""

from __future__ import annotations

import pytest

from shared.config import parse_config
from shared.errors import UnsupportedParameter
from workers.providers.anthropic import AnthropicProvider
from workers.providers.vertex import VertexProvider

CHAT = {"model": "alias", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "high"}


def model(kind: str, **fields):
    node = {"name": "m", "type": kind, "api_key": "sk-the-gateways-key", **fields}
    if kind == "vertex":
        node = {"name": "m", "type": "vertex", "project": "p", **fields}
    return parse_config({"models": [node], "routes": []}, {}).models[0]


def test_an_anthropic_clients_version_and_betas_are_forwarded_and_nothing_else():
    provider = AnthropicProvider(model("anthropic", base_url="https://anthropic.example/v1"))
    sent = provider.messages_request({"model": "alias", "max_tokens": 5, "messages": [], "x_new": 1}, request_id="r",
                                     client_headers={"anthropic-beta": "a-1,b-2", "anthropic-version": "2026-10-21",
                                                     "x-api-key": "the-callers", "authorization": "Bearer x"})
    assert sent.url == "https://anthropic.example/v1/messages"
    assert sent.body == {"model": "m", "max_tokens": 5, "messages": [], "x_new": 1}
    assert sent.headers["anthropic-beta"] == "a-1,b-2" and sent.headers["anthropic-version"] == "2026-10-21"
    assert sent.headers["x-api-key"] == "sk-the-gateways-key" and "authorization" not in sent.headers
    plain = provider.messages_request({"model": "alias"}, request_id="r")
    assert plain.headers["anthropic-version"] == "2023-06-01" and "anthropic-beta" not in plain.headers


def test_token_counting_goes_to_the_providers_endpoint():
    for base in ("https://anthropic.example", "https://anthropic.example/v1"):
        provider = AnthropicProvider(model("anthropic", base_url=base))
        sent = provider.count_tokens_request({"model": "alias", "messages": []}, request_id="r",
                                             client_headers={"anthropic-beta": "x"})
        assert sent.url == "https://anthropic.example/v1/messages/count_tokens"
        assert sent.body == {"model": "m", "messages": []} and sent.headers["anthropic-beta"] == "x"


@pytest.mark.parametrize(("reasoning", "thinking"), [
    (None, {"type": "enabled", "budget_tokens": 24576}),
    ("budget", {"type": "enabled", "budget_tokens": 24576}),
    ("adaptive", {"type": "adaptive"}),
])
def test_the_reasoning_control_chooses_anthropics_thinking(reasoning, thinking):
    fields = {"reasoning": reasoning} if reasoning else {}
    body = AnthropicProvider(model("anthropic", **fields)).chat_request(CHAT, request_id="r").body
    assert body["thinking"] == thinking
    assert body.get("output_config") == ({"effort": "high"} if reasoning == "adaptive" else None)


def test_a_model_without_a_reasoning_control_refuses_reasoning_effort():
    provider = AnthropicProvider(model("anthropic", reasoning="none"))
    with pytest.raises(UnsupportedParameter) as refused:
        provider.chat_request(CHAT, request_id="r")
    assert refused.value.param == "reasoning_effort"
    neutral = provider.chat_request({**CHAT, "reasoning_effort": "none"}, request_id="r").body
    assert "thinking" not in neutral


def test_vertex_without_a_reasoning_control_refuses_it_before_any_token_is_fetched():
    provider = VertexProvider(model("vertex", reasoning="none"))
    with pytest.raises(UnsupportedParameter) as refused:
        provider.chat_request(CHAT, request_id="r")
    assert refused.value.param == "reasoning_effort"
    assert provider._credentials is None  # refused before any credential was loaded
