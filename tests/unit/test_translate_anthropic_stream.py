"""Anthropic stream events -> OpenAI chat completion chunks: text, tool calls, usage, stop reasons, errors."""

import json

import pytest

from shared.errors import UpstreamError
from workers.translate.anthropic import AnthropicStreamToChat


def message_start(input_tokens=25, **usage):
    return ("message_start", {"type": "message_start", "message": {
        "id": "msg_01XY", "type": "message", "role": "assistant", "model": "claude-x-1", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage}}})


def block_start(index, block):
    return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def text_delta(index, text):
    return ("content_block_delta", {"type": "content_block_delta", "index": index,
                                    "delta": {"type": "text_delta", "text": text}})


def json_delta(index, partial):
    return ("content_block_delta", {"type": "content_block_delta", "index": index,
                                    "delta": {"type": "input_json_delta", "partial_json": partial}})


def block_stop(index):
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


def message_delta(stop_reason, output_tokens, **usage):
    return ("message_delta", {"type": "message_delta",
                              "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                              "usage": {"output_tokens": output_tokens, **usage}})


MESSAGE_STOP = ("message_stop", {"type": "message_stop"})
PING = ("ping", {"type": "ping"})


def text_events(parts, stop_reason="end_turn"):
    return [message_start(), block_start(0, {"type": "text", "text": ""}), PING,
            *[text_delta(0, part) for part in parts], block_stop(0),
            message_delta(stop_reason, 9), MESSAGE_STOP]


def run_stream(events, include_usage=False):
    stream = AnthropicStreamToChat("my-claude", 1700000000, include_usage)
    chunks = [chunk for event, data in events for chunk in stream.feed(event, data)]
    return stream, chunks


def test_stream_text_only():
    stream, chunks = run_stream(text_events(["Hel", "lo, ", "world"]))
    for chunk in chunks:
        assert (chunk["id"], chunk["object"], chunk["created"], chunk["model"]) == (
            "chatcmpl-msg_01XY", "chat.completion.chunk", 1700000000, "my-claude")
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo, "},
                      {"content": "world"}, {}]
    assert "".join(d.get("content", "") for d in deltas) == "Hello, world"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, None, "stop"]
    assert chunks[0]["choices"][0] == {"index": 0, "delta": {"role": "assistant", "content": ""},
                                       "logprobs": None, "finish_reason": None}
    assert stream.usage == {"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34}


def test_stream_usage_chunk_only_when_asked():
    _, without = run_stream(text_events(["hi"]))
    assert all(c["choices"] for c in without)
    _, with_usage = run_stream(text_events(["hi"]), include_usage=True)
    assert len(with_usage) == len(without) + 1
    last = with_usage[-1]
    assert last == {"id": "chatcmpl-msg_01XY", "object": "chat.completion.chunk", "created": 1700000000,
                    "model": "my-claude", "choices": [],
                    "usage": {"prompt_tokens": 25, "completion_tokens": 9, "total_tokens": 34}}


def test_stream_usage_counts_cached_input_and_follows_message_delta():
    stream = AnthropicStreamToChat("m", 0, True)
    assert stream.usage is None
    stream.feed(*message_start(input_tokens=3, cache_creation_input_tokens=4, cache_read_input_tokens=5))
    assert stream.usage == {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13,
                            "prompt_tokens_details": {"cached_tokens": 5}}
    # Recent API versions repeat the (cumulative) input counts in message_delta.
    stream.feed(*message_delta("end_turn", 40, input_tokens=6, cache_read_input_tokens=2))
    assert stream.usage == {"prompt_tokens": 8, "completion_tokens": 40, "total_tokens": 48,
                            "prompt_tokens_details": {"cached_tokens": 2}}
    assert stream.feed(*MESSAGE_STOP)[0]["usage"] == stream.usage


def test_stream_text_then_two_tool_calls_with_fragmented_arguments():
    paris, rome = {"city": "Paris", "units": "metric"}, {"city": "Rome", "days": [1, 2]}
    events = [
        message_start(),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "Two cities."}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "sig"}}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        text_delta(1, "Let me "), text_delta(1, "check."),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}),
        json_delta(2, ""), json_delta(2, '{"city": "Pa'), json_delta(2, 'ris", "units"'), json_delta(2, ': "metric"}'),
        block_stop(2),
        block_start(3, {"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {}}),
        json_delta(3, '{"city": "Rome", '), json_delta(3, '"days": [1, 2]}'),
        block_stop(3),
        message_delta("tool_use", 88),
        MESSAGE_STOP,
    ]
    _, chunks = run_stream(events)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("content") or "" for d in deltas) == "Let me check."
    # Thinking never reaches the answer's text: it rides the pivot's reasoning fields, the whole
    # block (signature included) once it is complete.
    assert not any("Two cities" in (d.get("content") or "") for d in deltas)
    assert [d["reasoning_content"] for d in deltas if "reasoning_content" in d] == ["Two cities."]
    assert [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d] == [
        [{"type": "thinking", "thinking": "Two cities.", "signature": "sig"}]]
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    starts = [call for call in calls if "id" in call]
    assert starts == [
        {"index": 0, "id": "toolu_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"index": 1, "id": "toolu_B", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
    ]
    args = {k: "".join(c["function"]["arguments"] for c in calls if c["index"] == k) for k in (0, 1)}
    assert json.loads(args[0]) == paris and json.loads(args[1]) == rome
    assert all(set(call) == {"index", "function"} for call in calls if "id" not in call)
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
     ("refusal", "content_filter"), ("pause_turn", "stop")],
)
def test_stream_stop_reasons(reason, finish):
    _, chunks = run_stream(text_events(["x"], stop_reason=reason))
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]] == [finish]


def test_stream_error_event_raises_upstream_error():
    stream = AnthropicStreamToChat("m", 0, False)
    stream.feed(*message_start())
    with pytest.raises(UpstreamError) as info:
        stream.feed("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert info.value.message == "Overloaded"
    assert info.value.status == 502


def test_stream_ignores_ping_stops_and_unknown_events():
    stream = AnthropicStreamToChat("m", 0, True)
    assert stream.feed(*PING) == []
    stream.feed(*message_start())
    assert stream.feed(*block_start(0, {"type": "text", "text": ""})) == []
    assert stream.feed(*block_stop(0)) == []
    assert stream.feed("future_event", {"type": "future_event", "x": 1}) == []
    assert stream.feed(*json_delta(5, '{"a"')) == []  # no tool block at that index
