"""The sandbox provider's reasoning over real HTTP: OpenAI chat `reasoning_effort` (reasoning tokens in the
usage) and Anthropic `thinking` (a thinking block with a signature, streamed as thinking_delta and
signature_delta). The Responses API's reasoning items: test_sandbox_provider_responses.py."""

from __future__ import annotations

import anthropic
import openai
import pytest
import requests

from tests.unit.sandbox_fixtures import ANTHROPIC_HEADERS, chat, chat_body, messages, messages_body, post_stream, sse

TOOLS = [{"name": "search", "input_schema": {"type": "object"}}]


def test_chat_reasoning_effort_adds_reasoning_tokens(base):
    plain = chat(base, "two words").json()["usage"]
    data = chat(base, "two words", reasoning_effort="high").json()
    # "Sandbox reasoning (high): two words": 5 reasoning tokens, counted in the completion tokens
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": plain["completion_tokens"] + 5,
                             "total_tokens": 2 + plain["completion_tokens"] + 5,
                             "completion_tokens_details": {"reasoning_tokens": 5}}
    assert data["choices"][0]["message"]["content"] == "Sandbox reply: two words"
    assert chat(base, "two words", reasoning_effort="none").json()["usage"] == plain
    assert chat(base, "x", reasoning_effort=3).status_code == 400
    r, _ = post_stream(base, "/v1/chat/completions", chat_body("two words", reasoning_effort="low", stream=True,
                                                               stream_options={"include_usage": True}))
    usage = sse(r)[-2][1]["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 5}
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    done = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}],
                                          reasoning_effort="medium")
    assert done.usage.completion_tokens_details.reasoning_tokens == 4


def test_anthropic_thinking_block(base):
    data = messages(base, "deep question", thinking={"type": "enabled", "budget_tokens": 1024}).json()
    thinking, text = data["content"]
    assert thinking == {"type": "thinking", "thinking": "Sandbox reasoning (enabled): deep question",
                        "signature": thinking["signature"]}
    assert thinking["signature"] and text == {"type": "text", "text": "Sandbox reply: deep question"}
    assert data["usage"]["output_tokens"] == 4 + 5
    adaptive = messages(base, "deep question", thinking={"type": "adaptive"}, output_config={"effort": "low"}).json()
    assert adaptive["content"][0]["thinking"] == "Sandbox reasoning (adaptive, effort low): deep question"
    omitted = messages(base, "deep question", thinking={"type": "adaptive", "display": "omitted"}).json()
    assert omitted["content"][0]["thinking"] == "" and omitted["content"][0]["signature"]
    assert omitted["usage"]["output_tokens"] == 4 + 5  # the model thought all the same
    for no in ({"type": "disabled"}, None):
        assert [b["type"] for b in messages(base, "q", thinking=no).json()["content"]] == ["text"]
    assert [b["type"] for b in messages(base, "q", output_config={"effort": "high"}).json()["content"]] == ["text"]
    tool = messages(base, "find [[sandbox tool=search]]", tools=TOOLS, thinking={"type": "adaptive"}).json()
    assert [b["type"] for b in tool["content"]] == ["thinking", "tool_use"] and tool["stop_reason"] == "tool_use"


def test_anthropic_thinking_stream(base):
    body = messages_body("deep question", stream=True, thinking={"type": "enabled", "budget_tokens": 1024})
    r, _ = post_stream(base, "/v1/messages", body, headers=ANTHROPIC_HEADERS)
    events = sse(r)
    whole = messages(base, "deep question", thinking={"type": "enabled", "budget_tokens": 1024}).json()
    names = [name for name, _ in events]
    assert names == ["message_start", "ping",
                     "content_block_start", *["content_block_delta"] * 5, "content_block_delta", "content_block_stop",
                     "content_block_start", *["content_block_delta"] * 4, "content_block_stop",
                     "message_delta", "message_stop"]
    assert events[2][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    thoughts = [d["delta"] for name, d in events if name == "content_block_delta" and d["index"] == 0]
    assert [t["type"] for t in thoughts] == ["thinking_delta"] * 5 + ["signature_delta"]
    assert "".join(t["thinking"] for t in thoughts[:-1]) == whole["content"][0]["thinking"]
    assert thoughts[-1]["signature"] == whole["content"][0]["signature"]
    assert events[10][1] == {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}
    assert {d["index"] for name, d in events[11:15]} == {1}
    assert events[-2][1]["usage"] == {"output_tokens": whole["usage"]["output_tokens"]}
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    with client.messages.stream(model="c", max_tokens=100, messages=[{"role": "user", "content": "deep question"}],
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        final = stream.get_final_message()
    thinking, text = final.content
    assert thinking.type == "thinking" and thinking.thinking == whole["content"][0]["thinking"]
    assert thinking.signature == whole["content"][0]["signature"]
    assert text.text == "Sandbox reply: deep question" and final.usage.output_tokens == 9


def test_a_fault_counts_thinking_as_content(base):
    body = messages_body("deep question [[sandbox error_after=3]]", stream=True, thinking={"type": "adaptive"})
    r, _ = post_stream(base, "/v1/messages", body, headers=ANTHROPIC_HEADERS)
    events = sse(r)
    assert [name for name, _ in events] == ["message_start", "ping", "content_block_start",
                                            *["content_block_delta"] * 3, "error"]
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIError, match="overloaded_error"):
        list(client.messages.create(model="c", max_tokens=50, stream=True, thinking={"type": "adaptive"},
                                    messages=[{"role": "user", "content": "x [[sandbox error_after=1]]"}]))
    assert requests.get(f"{base}/_sandbox/streams", timeout=5).json()[-1]["reason"] == "failed"
