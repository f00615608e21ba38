"""Anthropic response -> OpenAI chat completion: text, usage and stop_reason -> finish_reason."""

import pytest

from workers.translate.anthropic import anthropic_response_to_chat, anthropic_stop_reason_to_finish_reason


def test_text_response():
    resp = {
        "id": "msg_abc",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Hello, "},
            {"type": "text", "text": "world"},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "cache_creation_input_tokens": 4, "cache_read_input_tokens": 5,
                  "output_tokens": 7},
    }
    out = anthropic_response_to_chat(resp, requested_model="my-claude", created=1700000000)
    assert out == {
        "id": "chatcmpl-msg_abc",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "my-claude",
        "choices": [{
            "index": 0,
            # Thinking rides the pivot's extension fields, never the answer's text.
            "message": {"role": "assistant", "content": "Hello, world", "refusal": None,
                        "reasoning_content": "hmm",
                        "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "s"}]},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
                  "prompt_tokens_details": {"cached_tokens": 5}},
    }


def test_usage_missing_fields_count_as_zero():
    resp = {"id": "m", "content": [], "stop_reason": None,
            "usage": {"input_tokens": 2, "cache_read_input_tokens": None, "output_tokens": 1}}
    out = anthropic_response_to_chat(resp, requested_model="x", created=0)
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
    assert out["choices"][0]["message"]["content"] is None
    assert "tool_calls" not in out["choices"][0]["message"]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reason_mapping(reason, finish):
    assert anthropic_stop_reason_to_finish_reason(reason) == finish
    resp = {"id": "m", "content": [{"type": "text", "text": "x"}], "stop_reason": reason, "usage": {}}
    out = anthropic_response_to_chat(resp, requested_model="x", created=0)
    assert out["choices"][0]["finish_reason"] == finish
