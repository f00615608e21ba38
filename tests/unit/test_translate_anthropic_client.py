import json

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from workers.translate.anthropic import chat_request_to_anthropic
from workers.translate.anthropic_client import (
    ChatStreamToMessages,
    chat_response_to_messages,
    messages_request_to_chat,
)

USER = {"role": "user", "content": "hi"}
WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def convert(**body):
    body.setdefault("model", "claude-alias")
    body.setdefault("max_tokens", 256)
    body.setdefault("messages", [USER])
    return messages_request_to_chat(body, upstream_model="gpt-x")


def refused(exc_type, **body) -> str:
    with pytest.raises(exc_type) as info:
        convert(**body)
    return info.value.param


def user(*blocks):
    return {"role": "user", "content": list(blocks)}


# --- request -----------------------------------------------------------------


def test_minimal_request():
    out = convert(stream=True)
    assert out == {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 256}


def test_max_tokens_is_required_and_positive():
    with pytest.raises(InvalidRequest) as info:
        messages_request_to_chat({"model": "m", "messages": [USER]}, upstream_model="x")
    assert info.value.param == "max_tokens" and not isinstance(info.value, UnsupportedParameter)
    assert refused(InvalidRequest, max_tokens=0) == "max_tokens"
    assert refused(InvalidRequest, max_tokens=True) == "max_tokens"


def test_sampling_stop_and_user():
    out = convert(temperature=0.3, top_p=0.8, stop_sequences=["END", "STOP"], metadata={"user_id": "u-7"})
    assert (out["temperature"], out["top_p"], out["stop"], out["user"]) == (0.3, 0.8, ["END", "STOP"], "u-7")
    assert "stop" not in convert(stop_sequences=[])
    assert refused(InvalidRequest, temperature="hot") == "temperature"
    assert refused(InvalidRequest, stop_sequences="END") == "stop_sequences"
    assert refused(UnsupportedParameter, metadata={"user_id": "u", "team": "x"}) == "metadata.team"


def test_none_values_and_disabled_thinking_pass():
    out = convert(top_k=None, thinking={"type": "disabled"}, system=None, tools=None, tool_choice=None,
                  metadata=None, service_tier=None, temperature=None)
    assert out == {"model": "gpt-x", "messages": [USER], "max_tokens": 256}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("top_k", 40),
        ("thinking", {"type": "enabled", "budget_tokens": 2048}),
        ("container", "container_1"),
        ("mcp_servers", [{"type": "url", "url": "https://mcp", "name": "m"}]),
        ("service_tier", "auto"),
        ("context_management", {"edits": []}),
        ("some_future_field", 1),
    ],
)
def test_unexpressible_top_level_fields_are_refused_by_name(key, value):
    with pytest.raises(UnsupportedParameter) as info:
        convert(**{key: value})
    assert info.value.param == key
    assert f"'{key}'" in info.value.message


def test_system_string_and_blocks():
    assert convert(system="Be brief.")["messages"][0] == {"role": "system", "content": "Be brief."}
    blocks = [{"type": "text", "text": "You are a bot."},
              {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    out = convert(system=blocks)
    assert out["messages"] == [{"role": "system", "content": "You are a bot.\n\nBe brief."}, USER]
    assert convert(system="")["messages"] == [USER]
    image = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
    assert refused(UnsupportedParameter, system=[blocks[0], image]) == "system[1].type"


def test_user_text_blocks_and_images():
    one = convert(messages=[user({"type": "text", "text": "only", "cache_control": {"type": "ephemeral"}})])
    assert one["messages"] == [{"role": "user", "content": "only"}]
    out = convert(messages=[user(
        {"type": "text", "text": "What are these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    )])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


def test_bad_images():
    file_image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}
    assert refused(UnsupportedParameter, messages=[user(file_image)]) == "messages[0].content[0].source.type"
    no_data = {"type": "image", "source": {"type": "base64", "media_type": "image/png"}}
    assert refused(InvalidRequest, messages=[user(no_data)]) == "messages[0].content[0].source"
    image = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
    assistant = {"role": "assistant", "content": [image]}
    assert refused(InvalidRequest, messages=[USER, assistant, USER]) == "messages[1].content[0].type"


@pytest.mark.parametrize(
    ("role", "block"),
    [
        ("user", {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}),
        ("assistant", {"type": "thinking", "thinking": "hmm", "signature": "s"}),
        ("assistant", {"type": "redacted_thinking", "data": "xyz"}),
        ("assistant", {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}),
        ("user", {"type": "search_result", "source": "s", "title": "t", "content": []}),
    ],
)
def test_unknown_block_types_are_refused_with_index(role, block):
    msg = {"role": role, "content": [{"type": "text", "text": "x"}, block]}
    param = refused(UnsupportedParameter, messages=[USER, msg, USER])
    assert param == "messages[1].content[1].type"


def test_malformed_messages():
    assert refused(InvalidRequest, messages=[]) == "messages"
    assert refused(InvalidRequest, messages=[{"role": "system", "content": "x"}]) == "messages[0].role"
    assert refused(InvalidRequest, messages=[user({"text": "no type"})]) == "messages[0].content[0].type"
    assert refused(InvalidRequest, messages=[user({"type": "text", "text": 5})]) == "messages[0].content[0].text"
    assert refused(InvalidRequest, messages=[user()]) == "messages[0].content"
    assert refused(UnsupportedParameter, messages=[{**USER, "name": "bob"}]) == "messages[0].name"


def test_final_assistant_prefill_is_refused():
    param = refused(UnsupportedParameter, messages=[USER, {"role": "assistant", "content": "The answer is"}])
    assert param == "messages[1].role"


CONVERSATION = [
    {"role": "user", "content": "Weather in Paris and Rome?"},
    {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
    ]},
    {"role": "user", "content": [
        {"type": "text", "text": "Thanks, which is warmer?"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
         "content": [{"type": "text", "text": "timeout"}, {"type": "text", "text": "retry later"}]},
    ]},
]


def test_tool_conversation():
    out = convert(messages=CONVERSATION, tools=[WEATHER])
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}},
            {"id": "toolu_2", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Rome"})}},
        ]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: timeout\nretry later"},
        {"role": "user", "content": "Thanks, which is warmer?"},
    ]
    assert json.loads(out["messages"][1]["tool_calls"][1]["function"]["arguments"]) == {"city": "Rome"}
    assert out["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["input_schema"]}}]


def test_round_trip_back_to_anthropic_keeps_the_conversation():
    chat = convert(messages=CONVERSATION[:2] + [user(
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"},
        {"type": "text", "text": "Thanks, which is warmer?"},
    )], system="Be brief.", tools=[WEATHER], tool_choice={"type": "any"}, stop_sequences=["END"])
    back = chat_request_to_anthropic(chat, upstream_model="claude", default_max_tokens=1)
    assert back["system"] == "Be brief."
    assert back["max_tokens"] == 256 and back["stop_sequences"] == ["END"]
    assert back["tool_choice"] == {"type": "any"}
    assert back["tools"] == [WEATHER]
    assert back["messages"][:2] == CONVERSATION[:2]
    assert back["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"},
        {"type": "text", "text": "Thanks, which is warmer?"},
    ]


def test_assistant_with_only_tool_use_and_empty_tool_result():
    msgs = [USER, {"role": "assistant", "content": [
        {"type": "text", "text": ""}, {"type": "tool_use", "id": "t", "name": "now", "input": {}}]},
        user({"type": "tool_result", "tool_use_id": "t"})]
    out = convert(messages=msgs)["messages"]
    assert out[1]["content"] is None and out[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert out[2:] == [{"role": "tool", "tool_call_id": "t", "content": ""}]


def test_bad_tool_blocks():
    bad_input = {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": "{}"}]}
    assert refused(InvalidRequest, messages=[USER, bad_input, USER]) == "messages[1].content[0].input"
    in_user = user({"type": "tool_use", "id": "t", "name": "n", "input": {}})
    assert refused(InvalidRequest, messages=[in_user]) == "messages[0].content[0].type"
    image_result = user({"type": "tool_result", "tool_use_id": "t", "content": [
        {"type": "text", "text": "see"}, {"type": "image", "source": {"type": "url", "url": "https://x/a.png"}}]})
    assert refused(UnsupportedParameter, messages=[image_result]) == "messages[0].content[0].content[1].type"
    no_id = user({"type": "tool_result", "content": "x"})
    assert refused(InvalidRequest, messages=[no_id]) == "messages[0].content[0].tool_use_id"


def test_tools():
    custom = {"type": "custom", "name": "now", "input_schema": {"type": "object"},
              "cache_control": {"type": "ephemeral"}}
    assert convert(tools=[custom])["tools"] == [
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}]
    server = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    assert refused(UnsupportedParameter, tools=[WEATHER, server]) == "tools[1].type"
    assert refused(UnsupportedParameter, tools=[{**WEATHER, "input_examples": [{}]}]) == "tools[0].input_examples"
    assert refused(InvalidRequest, tools=[{"input_schema": {}}]) == "tools[0].name"
    assert refused(InvalidRequest, tools=[{"name": "x"}]) == "tools[0].input_schema"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice(choice, expected):
    out = convert(tools=[WEATHER], tool_choice=choice)
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_disable_parallel_tool_use_and_bad_choices():
    out = convert(tools=[WEATHER], tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    assert (out["tool_choice"], out["parallel_tool_calls"]) == ("auto", False)
    assert refused(UnsupportedParameter, tools=[WEATHER], tool_choice={"type": "sometimes"}) == "tool_choice.type"
    assert refused(InvalidRequest, tools=[WEATHER], tool_choice="auto") == "tool_choice"
    assert refused(InvalidRequest, tools=[WEATHER], tool_choice={"type": "tool"}) == "tool_choice.name"


# --- response ----------------------------------------------------------------


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


# --- stream ------------------------------------------------------------------


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
            message["usage"]["output_tokens"] = data["usage"]["output_tokens"]
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
                            "usage": {"output_tokens": 12}}
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
    assert released[0][1]["usage"] == {"output_tokens": 12}
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
    assert end[1][1]["usage"] == {"output_tokens": 12}
    assert stream.feed(chunk(usage=USAGE, choices=False)) == [] and stream.finish() == []


def test_stream_without_usage_ends_on_finish():
    stream = ChatStreamToMessages("m", "msg_1", input_tokens=7)
    stream.feed(chunk({"content": "Hi"}))
    assert names(stream.feed(chunk(finish_reason="stop"))) == ["content_block_stop"]
    end = stream.finish()
    assert names(end) == ["message_delta", "message_stop"]
    assert end[0][1]["usage"] == {"output_tokens": 0}
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
