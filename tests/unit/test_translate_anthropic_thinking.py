"""Reasoning through the chat pivot to Anthropic and back: reasoning_effort -> thinking, thinking blocks both ways."""

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter
from tests.unit.translate_anthropic_helpers import USER, convert
from workers.translate.anthropic import AnthropicStreamToChat, anthropic_response_to_chat, chat_request_to_anthropic

SIGNED = {"type": "thinking", "thinking": "Paris first.", "signature": "c2lnbmF0dXJl"}
REDACTED = {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"}


# --- reasoning_effort -> thinking ----------------------------------------------------------------

@pytest.mark.parametrize(("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 8192),
                                                 ("high", 24576), ("xhigh", 32768), ("max", 32768)])
def test_effort_becomes_a_budget_on_top_of_the_default_answer_allowance(effort, budget):
    out = convert(reasoning_effort=effort)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == 1024 + budget  # the default allowance (1024 in the helper) stays whole
    assert "output_config" not in out


def test_effort_within_a_callers_max_tokens_is_clamped_below_it():
    out = convert(reasoning_effort="high", max_completion_tokens=5000)
    assert (out["max_tokens"], out["thinking"]["budget_tokens"]) == (5000, 4999)
    out = convert(reasoning_effort="low", max_tokens=30000)
    assert (out["max_tokens"], out["thinking"]["budget_tokens"]) == (30000, 1024)


def test_effort_with_too_small_a_max_tokens_is_refused_by_name():
    with pytest.raises(UnsupportedParameter) as info:
        convert(reasoning_effort="low", max_tokens=1024)
    assert info.value.param == "reasoning_effort" and "1024" in info.value.message


def test_no_effort_and_none_ask_for_no_thinking():
    for body in ({}, {"reasoning_effort": None}, {"reasoning_effort": "none"}):
        out = convert(**body)
        assert "thinking" not in out and out["max_tokens"] == 1024


def test_adaptive_models_get_an_effort_instead_of_a_budget():
    def adaptive(effort):
        return chat_request_to_anthropic({"model": "c", "messages": [USER], "reasoning_effort": effort},
                                         upstream_model="claude-x", default_max_tokens=1024, thinking="adaptive")
    out = adaptive("medium")
    assert (out["thinking"], out["output_config"], out["max_tokens"]) == ({"type": "adaptive"},
                                                                          {"effort": "medium"}, 1024)
    assert adaptive("minimal")["output_config"] == {"effort": "low"}
    assert adaptive("xhigh")["output_config"] == {"effort": "xhigh"}
    assert "thinking" not in adaptive("none")
    with pytest.raises(ValueError):
        chat_request_to_anthropic({"model": "c", "messages": [USER]}, upstream_model="x", default_max_tokens=1,
                                  thinking="turbo")


def test_unknown_effort_is_invalid():
    with pytest.raises(InvalidRequest) as info:
        convert(reasoning_effort="extreme")
    assert info.value.param == "reasoning_effort"


# --- thinking blocks sent back -------------------------------------------------------------------

def test_assistant_thinking_blocks_go_back_first_and_unchanged():
    messages = [USER, {"role": "assistant", "content": "Let me look.", "reasoning_content": "Paris first.",
                       "thinking_blocks": [SIGNED, REDACTED],
                       "tool_calls": [{"id": "toolu_1", "type": "function",
                                       "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}]
    out = convert(messages=messages)
    assert out["messages"][1] == {"role": "assistant", "content": [
        SIGNED, REDACTED, {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]}


def test_thinking_alone_and_plain_reasoning_text():
    out = convert(messages=[USER, {"role": "assistant", "content": None, "thinking_blocks": [SIGNED]}, USER])
    assert out["messages"][1] == {"role": "assistant", "content": [SIGNED]}
    # Unsigned reasoning text cannot be replayed to Anthropic: it is display only.
    out = convert(messages=[USER, {"role": "assistant", "content": "Hi", "reasoning_content": "hmm"}, USER])
    assert out["messages"][1] == {"role": "assistant", "content": "Hi"}


@pytest.mark.parametrize(("blocks", "param"), [
    ("x", "messages[1].thinking_blocks"),
    ([{"type": "thinking", "thinking": "t"}], "messages[1].thinking_blocks[0]"),
    ([{"type": "redacted_thinking"}], "messages[1].thinking_blocks[0].data"),
    ([{"type": "text", "text": "t"}], "messages[1].thinking_blocks[0].type"),
])
def test_malformed_thinking_blocks_are_invalid(blocks, param):
    with pytest.raises(InvalidRequest) as info:
        convert(messages=[USER, {"role": "assistant", "content": "x", "thinking_blocks": blocks}, USER])
    assert info.value.param == param


def test_thinking_only_on_assistant_messages():
    with pytest.raises(InvalidRequest) as info:
        convert(messages=[{"role": "user", "content": "hi", "thinking_blocks": [SIGNED]}])
    assert info.value.param == "messages[0].thinking_blocks"


# --- thinking in answers ---------------------------------------------------------------------------

def test_whole_answer_carries_thinking_and_redacted_thinking():
    resp = {"id": "m", "content": [SIGNED, REDACTED, {"type": "text", "text": "Sunny."}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 1, "output_tokens": 2}}
    message = anthropic_response_to_chat(resp, requested_model="c", created=0)["choices"][0]["message"]
    assert message["content"] == "Sunny."
    assert message["reasoning_content"] == "Paris first."
    assert message["thinking_blocks"] == [SIGNED, REDACTED]


def test_stream_carries_redacted_thinking_whole_and_signed_thinking_when_complete():
    stream = AnthropicStreamToChat("c", 0, False)
    events = [
        ("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": REDACTED}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "thinking_delta", "thinking": "Paris "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "thinking_delta", "thinking": "first."}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ]
    deltas = [chunk["choices"][0]["delta"] for event, data in events for chunk in stream.feed(event, data)]
    assert deltas[1:] == [{"thinking_blocks": [REDACTED]}, {"reasoning_content": "Paris "},
                          {"reasoning_content": "first."}, {"thinking_blocks": [SIGNED]}]
