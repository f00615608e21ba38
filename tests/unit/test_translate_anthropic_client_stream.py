"""Tests for an OpenAI chat stream translated into Anthropic stream events (anthropic_client_stream)."""

import json

import pytest

from shared.errors import UpstreamError
from tests.unit.test_translate_anthropic_client_response import chat_response
from workers.translate.anthropic_client_response import chat_response_to_messages
from workers.translate.anthropic_client_stream import ChatStreamToMessages


def chunk(delta=None, finish_reason=None, usage=None, choices=True):
    out = {"id": "chatcmpl-abc", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
           "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}]
           if choices else []}
    if usage is not None:
        out["usage"] = usage
    return out


def tool_chunk(index, arguments, call_id=None, name=None):
    call = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


USAGE = {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}


def run(chunks, input_tokens=0):
    stream = ChatStreamToMessages("claude-alias", "msg_abc", input_tokens)
    events = [event for c in chunks for event in stream.feed(c)]
    return stream, events + stream.finish()


def names(events):
    return [name for name, _ in events]


def rebuild(events):
    """What an Anthropic SDK accumulates from the events."""
    message, partial = None, {}
    for name, data in events:
        assert data["type"] == name
        if name == "message_start":
            message = data["message"]
        elif name == "content_block_start":
            assert data["index"] == len(message["content"])
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, delta = message["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"].update(data["usage"])  # cumulative, as the SDKs read it
    return message


def test_stream_text_only():
    parts = ["Hel", "lo, ", "world"]
    stream, events = run([chunk({"role": "assistant", "content": ""}), *[chunk({"content": p}) for p in parts],
                          chunk(finish_reason="stop", usage=USAGE)], input_tokens=30)
    assert names(events) == ["message_start", "content_block_start", "content_block_delta", "content_block_delta",
                             "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[0][1] == {"type": "message_start", "message": {
        "id": "msg_abc", "type": "message", "role": "assistant", "model": "claude-alias", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 30, "output_tokens": 0}}}
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[2][1] == {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}
    assert events[5][1] == {"type": "content_block_stop", "index": 0}
    assert events[6][1] == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"input_tokens": 30, "output_tokens": 12}}
    assert events[7][1] == {"type": "message_stop"}
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "Hello, world"
    assert stream.usage == {"input_tokens": 30, "output_tokens": 12}
    assert stream.finish() == [] and stream.feed(chunk({"content": "late"})) == []


def test_stream_text_then_two_tool_calls_with_fragmented_arguments():
    paris, rome = {"city": "Paris", "units": "metric"}, {"city": "Rome", "days": [1, 2]}
    chunks = [
        chunk({"role": "assistant", "content": None}),
        chunk({"content": "Let me "}), chunk({"content": "check."}),
        tool_chunk(0, "", "call_A", "get_weather"), tool_chunk(0, '{"city": "Pa'), tool_chunk(0, 'ris", "units"'),
        tool_chunk(0, ': "metric"}'),
        tool_chunk(1, '{"city": ', "call_B", "get_weather"), tool_chunk(1, '"Rome", "days": [1, 2]}'),
        chunk(finish_reason="tool_calls"),
        chunk(usage=USAGE, choices=False),
    ]
    _, events = run(chunks)
    starts = [(d["index"], d["content_block"]) for n, d in events if n == "content_block_start"]
    assert starts == [(0, {"type": "text", "text": ""}),
                      (1, {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}}),
                      (2, {"type": "tool_use", "id": "call_B", "name": "get_weather", "input": {}})]
    # Each block is stopped before the next one starts.
    opened = []
    for n, d in events:
        if n == "content_block_start":
            assert not opened
            opened.append(d["index"])
        elif n == "content_block_stop":
            assert opened == [d["index"]]
            opened.clear()
        elif n == "content_block_delta":
            assert opened == [d["index"]]
    fragments = {i: "".join(d["delta"]["partial_json"] for n, d in events
                            if n == "content_block_delta" and d["index"] == i) for i in (1, 2)}
    assert json.loads(fragments[1]) == paris and json.loads(fragments[2]) == rome
    assert all(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"])
    message = rebuild(events)
    assert message["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": paris},
        {"type": "tool_use", "id": "call_B", "name": "get_weather", "input": rome},
    ]
    assert (message["stop_reason"], message["usage"]["output_tokens"]) == ("tool_use", 12)


def test_stream_holds_message_delta_for_a_usage_only_chunk():
    stream = ChatStreamToMessages("m", "msg_1")
    stream.feed(chunk({"role": "assistant", "content": "Hi"}))
    held = stream.feed(chunk(finish_reason="length"))
    assert names(held) == ["content_block_stop"]
    released = stream.feed(chunk(usage=USAGE, choices=False))
    assert names(released) == ["message_delta", "message_stop"]
    assert released[0][1]["delta"]["stop_reason"] == "max_tokens"
    assert released[0][1]["usage"] == {"input_tokens": 30, "output_tokens": 12}
    assert stream.usage == {"input_tokens": 30, "output_tokens": 12}
    assert stream.finish() == []


def test_stream_ends_at_once_when_usage_rides_with_finish_reason():
    stream = ChatStreamToMessages("m", "msg_1")
    stream.feed(chunk({"content": "Hi"}, usage=None))
    # OpenAI sends "usage": null on every chunk but the last when include_usage is on: still held.
    assert names(stream.feed({**chunk(finish_reason="stop"), "usage": None})) == ["content_block_stop"]
    stream = ChatStreamToMessages("m", "msg_1")
    stream.feed(chunk({"content": "Hi"}))
    end = stream.feed(chunk(finish_reason="stop", usage=USAGE))
    assert names(end) == ["content_block_stop", "message_delta", "message_stop"]
    assert end[1][1]["usage"] == {"input_tokens": 30, "output_tokens": 12}
    assert stream.feed(chunk(usage=USAGE, choices=False)) == [] and stream.finish() == []


def test_stream_without_usage_ends_on_finish():
    stream = ChatStreamToMessages("m", "msg_1", input_tokens=7)
    stream.feed(chunk({"content": "Hi"}))
    assert names(stream.feed(chunk(finish_reason="stop"))) == ["content_block_stop"]
    end = stream.finish()
    assert names(end) == ["message_delta", "message_stop"]
    assert end[0][1]["usage"] == {"input_tokens": 7, "output_tokens": 0}
    assert stream.usage == {"input_tokens": 7, "output_tokens": 0}


def test_stream_cut_short_closes_blocks_with_end_turn():
    _, events = run([chunk({"content": "partial"}), tool_chunk(0, '{"a":', "call_1", "f")])
    assert names(events)[-4:] == ["content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    _, empty = run([])
    assert names(empty) == ["message_start", "message_delta", "message_stop"]


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal"),
     ("something_new", "end_turn")],
)
def test_stream_stop_reasons(finish, reason):
    _, events = run([chunk({"content": "x"}), chunk(finish_reason=finish, usage=USAGE)])
    deltas = [d for n, d in events if n == "message_delta"]
    assert [d["delta"]["stop_reason"] for d in deltas] == [reason]


def test_stream_matches_the_non_streaming_translation():
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": [1, "two"]}'}}]
    full = chat_response_to_messages(chat_response({"content": "Sure.", "tool_calls": calls}, "tool_calls", USAGE),
                                     requested_model="claude-alias")
    args = calls[0]["function"]["arguments"]
    _, events = run([chunk({"role": "assistant", "content": "Sure."}), tool_chunk(0, args[:5], "call_1", "f"),
                     tool_chunk(0, args[5:]), chunk(finish_reason="tool_calls"), chunk(usage=USAGE, choices=False)],
                    input_tokens=30)
    streamed = rebuild(events)
    assert {k: streamed[k] for k in ("content", "stop_reason", "usage", "model")} == {
        k: full[k] for k in ("content", "stop_reason", "usage", "model")}


def test_stream_tool_calls_without_index():
    _, events = run([chunk({"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}]}),
                     chunk({"tool_calls": [{"id": "c2", "function": {"name": "g", "arguments": '{"b": '}}]}),
                     chunk({"tool_calls": [{"function": {"arguments": "2}"}}]}),
                     chunk(finish_reason="tool_calls")])
    content = rebuild(events)["content"]
    assert [(b["id"], b["name"], b["input"]) for b in content] == [("c1", "f", {"a": 1}), ("c2", "g", {"b": 2})]


def test_stream_errors():
    stream = ChatStreamToMessages("m", "msg_1")
    with pytest.raises(UpstreamError) as info:
        stream.feed({"error": {"message": "model overloaded", "type": "server_error"}})
    assert info.value.message == "model overloaded"
    stream = ChatStreamToMessages("m", "msg_1")
    stream.feed(tool_chunk(0, '{"a": ', "c0", "f"))
    stream.feed(tool_chunk(1, "{}", "c1", "g"))
    with pytest.raises(UpstreamError, match="interleaved"):
        stream.feed(tool_chunk(0, "1}"))


def test_sdk_reads_the_real_input_tokens_when_usage_comes_last():
    """The chat stream reports usage only in its last chunk, after message_start went out with 0 input
    tokens: the official SDK's accumulated message must still carry the real count (issue 15)."""
    import anthropic
    import httpx2 as httpx  # the HTTP client these SDK versions are built on

    from shared.sse import ANTHROPIC, frame

    _, events = run([chunk({"role": "assistant", "content": "Hi"}), chunk(finish_reason="stop"),
                     chunk(usage=USAGE, choices=False)])
    assert events[0][1]["message"]["usage"]["input_tokens"] == 0  # not known yet when the stream starts
    body = b"".join(frame(ANTHROPIC, data, name) for name, data in events)
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=body))
    client = anthropic.Anthropic(api_key="k", base_url="http://gateway.test",
                                 http_client=httpx.Client(transport=transport))
    with client.messages.stream(model="claude-alias", max_tokens=10,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        message = stream.get_final_message()
    assert (message.usage.input_tokens, message.usage.output_tokens) == (30, 12)
    assert message.content[0].text == "Hi"
