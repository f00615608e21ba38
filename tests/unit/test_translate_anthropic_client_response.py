"""Tests for a whole OpenAI chat answer translated into an Anthropic Messages response (anthropic_client_response)."""

import pytest

from workers.translate.anthropic_client_response import chat_response_to_messages


def chat_response(message, finish_reason="stop", usage=None):
    resp = {"id": "chatcmpl-abc123", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}]}
    if usage is not None:
        resp["usage"] = usage
    return resp


def test_text_response():
    resp = chat_response({"content": "Hello!", "refusal": None},
                         usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15})
    assert chat_response_to_messages(resp, requested_model="claude-alias") == {
        "id": "msg_abc123", "type": "message", "role": "assistant", "model": "claude-alias",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3},
    }


def test_tool_call_response():
    resp = chat_response({"content": "Checking both.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Ro'}},
    ]}, finish_reason="tool_calls")
    out = chat_response_to_messages(resp, requested_model="m")
    assert out["content"] == [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"_raw": '{"city": "Ro'}},
    ]
    assert out["stop_reason"] == "tool_use"
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_empty_and_refusal_responses():
    assert chat_response_to_messages(chat_response({"content": None}), requested_model="m")["content"] == []
    out = chat_response_to_messages(chat_response({"content": None, "refusal": "I can't help with that."},
                                                  finish_reason="content_filter"), requested_model="m")
    assert out["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert out["stop_reason"] == "refusal"


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal"),
     ("function_call", "end_turn"), (None, "end_turn")],
)
def test_response_stop_reasons(finish, reason):
    resp = chat_response({"content": "x"}, finish_reason=finish)
    assert chat_response_to_messages(resp, requested_model="m")["stop_reason"] == reason
