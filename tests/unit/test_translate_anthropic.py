import json

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from workers.translate.anthropic import (
    AnthropicStreamToChat,
    anthropic_response_to_chat,
    anthropic_stop_reason_to_finish_reason,
    chat_request_to_anthropic,
)

USER = {"role": "user", "content": "hi"}


def convert(**body):
    body.setdefault("model", "claude")
    body.setdefault("messages", [USER])
    return chat_request_to_anthropic(body, upstream_model="claude-x-1", default_max_tokens=1024)


def refused(exc_type, **body) -> str:
    with pytest.raises(exc_type) as info:
        convert(**body)
    return info.value.param


# --- request: basics ---------------------------------------------------------


def test_minimal_request():
    out = convert(model="alias", stream=True, stream_options={"include_usage": True})
    assert out == {"model": "claude-x-1", "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]}


def test_max_tokens_sources_and_conflict():
    assert convert(max_tokens=50)["max_tokens"] == 50
    assert convert(max_completion_tokens=60)["max_tokens"] == 60
    assert convert(max_tokens=70, max_completion_tokens=70)["max_tokens"] == 70
    assert refused(InvalidRequest, max_tokens=70, max_completion_tokens=80) == "max_completion_tokens"
    assert refused(InvalidRequest, max_tokens=0) == "max_tokens"


def test_temperature_top_p_and_stop():
    out = convert(temperature=0.7, top_p=0.9, stop="END")
    assert (out["temperature"], out["top_p"], out["stop_sequences"]) == (0.7, 0.9, ["END"])
    assert convert(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert convert(temperature=1)["temperature"] == 1


def test_temperature_above_one_is_refused():
    with pytest.raises(UnsupportedParameter) as info:
        convert(temperature=1.5)
    assert info.value.param == "temperature"
    assert "0-2" in info.value.message and "0-1" in info.value.message
    assert info.value.status == 400


def test_user_becomes_metadata():
    assert convert(user="u-42")["metadata"] == {"user_id": "u-42"}


def test_none_values_are_ignored():
    out = convert(
        seed=None, n=None, temperature=None, stop=None, tools=None, tool_choice=None, user=None,
        logprobs=None, top_logprobs=None, response_format=None, metadata=None, store=None,
        presence_penalty=None, frequency_penalty=None, max_tokens=None, logit_bias=None,
    )
    assert out == {"model": "claude-x-1", "max_tokens": 1024, "messages": [USER]}


def test_neutral_values_are_accepted():
    out = convert(n=1, presence_penalty=0, frequency_penalty=0.0, logprobs=False,
                  response_format={"type": "text"})
    assert set(out) == {"model", "max_tokens", "messages"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n", 2),
        ("n", True),
        ("response_format", {"type": "json_object"}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", -1),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("seed", 7),
        ("logit_bias", {"50256": -100}),
        ("service_tier", "auto"),
        ("reasoning_effort", "low"),
        ("modalities", ["text"]),
        ("audio", {"voice": "alloy"}),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("metadata", {"a": "b"}),
        ("store", True),
        ("some_future_field", 1),
    ],
)
def test_unexpressible_fields_are_refused_by_name(key, value):
    with pytest.raises(UnsupportedParameter) as info:
        convert(**{key: value})
    assert info.value.param == key
    assert f"'{key}'" in info.value.message


def test_n_message_wording():
    with pytest.raises(UnsupportedParameter, match=r"'n' is not supported for Anthropic models \(only n=1\)"):
        convert(n=3)


# --- request: messages -------------------------------------------------------


def test_system_and_developer_strings_are_hoisted_and_joined():
    out = convert(messages=[
        {"role": "system", "content": "Be brief."},
        USER,
        {"role": "developer", "content": "Use French."},
    ])
    assert out["system"] == "Be brief.\n\nUse French."
    assert out["messages"] == [USER]


def test_system_with_parts_becomes_text_blocks():
    out = convert(messages=[
        {"role": "system", "content": "A"},
        {"role": "system", "content": [{"type": "text", "text": "B"}, {"type": "text", "text": "C"}]},
        USER,
    ])
    assert out["system"] == [{"type": "text", "text": t} for t in "ABC"]


def test_system_image_is_refused():
    param = refused(UnsupportedParameter, messages=[
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        USER,
    ])
    assert param == "messages[0].content[0].type"


def test_user_parts_text_and_images():
    out = convert(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_bad_image_urls():
    bad_data = {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
    ftp = {"type": "image_url", "image_url": {"url": "ftp://host/a.png"}}
    url_param = "messages[0].content[0].image_url.url"
    assert refused(InvalidRequest, messages=[{"role": "user", "content": [bad_data]}]) == url_param
    assert refused(UnsupportedParameter, messages=[{"role": "user", "content": [ftp]}]) == url_param


def test_unknown_part_type_is_refused_with_index():
    param = refused(UnsupportedParameter, messages=[
        USER,
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "input_audio"}]},
    ])
    assert param == "messages[1].content[1].type"


def test_message_name_is_refused():
    assert refused(UnsupportedParameter, messages=[{**USER, "name": "bob"}]) == "messages[0].name"


def test_unknown_role_is_invalid():
    assert refused(InvalidRequest, messages=[{"role": "robot", "content": "x"}]) == "messages[0].role"


def test_unknown_message_field_is_refused_but_echoed_empties_pass():
    assert refused(UnsupportedParameter, messages=[{**USER, "audio": {"id": "a"}}]) == "messages[0].audio"
    echoed = {"role": "assistant", "content": "ok", "refusal": None, "annotations": []}
    assert convert(messages=[USER, echoed, USER])["messages"][1] == {"role": "assistant", "content": "ok"}


def test_messages_must_be_nonempty_and_not_only_system():
    assert refused(InvalidRequest, messages=[]) == "messages"
    assert refused(InvalidRequest, messages=[{"role": "system", "content": "s"}]) == "messages"


# --- request: tools ----------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tools_convert():
    bare = {"type": "function", "function": {"name": "now"}}
    out = convert(tools=[WEATHER_TOOL, bare])
    assert out["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]


def test_non_function_tool_is_refused():
    param = refused(UnsupportedParameter, tools=[WEATHER_TOOL, {"type": "custom", "custom": {"name": "x"}}])
    assert param == "tools[1].type"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice(choice, expected):
    assert convert(tools=[WEATHER_TOOL], tool_choice=choice)["tool_choice"] == expected


def test_bad_tool_choice():
    assert refused(InvalidRequest, tools=[WEATHER_TOOL], tool_choice="sometimes") == "tool_choice"
    assert refused(UnsupportedParameter, tools=[WEATHER_TOOL], tool_choice={"type": "allowed_tools"}) == (
        "tool_choice"
    )


def test_parallel_tool_calls_false():
    assert convert(tools=[WEATHER_TOOL], parallel_tool_calls=False)["tool_choice"] == {
        "type": "auto", "disable_parallel_tool_use": True,
    }
    out = convert(tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False)
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert "tool_choice" not in convert(tools=[WEATHER_TOOL], parallel_tool_calls=True)


def test_tool_round_trip():
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "25C"}]},
        {"role": "user", "content": "Thanks, which is warmer?"},
    ]
    out = convert(messages=messages, tools=[WEATHER_TOOL])
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "25C"}]},
            {"type": "text", "text": "Thanks, which is warmer?"},
        ]},
    ]

    resp = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x-1",
        "content": [{"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    choice = anthropic_response_to_chat(resp, requested_model="alias", created=1)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call == {"id": "toolu_9", "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Oslo"})}}
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}


def test_assistant_null_or_empty_content_with_tool_calls():
    call = {"id": "c", "type": "function", "function": {"name": "now", "arguments": "{}"}}
    for content in (None, ""):
        out = convert(messages=[USER, {"role": "assistant", "content": content, "tool_calls": [call]},
                                {"role": "tool", "tool_call_id": "c", "content": "noon"}])
        assert out["messages"][1]["content"] == [{"type": "tool_use", "id": "c", "name": "now", "input": {}}]


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]", '"str"', None])
def test_tool_call_arguments_must_be_json_object(arguments):
    call = {"id": "c", "type": "function", "function": {"name": "now", "arguments": arguments}}
    assistant = {"role": "assistant", "content": None, "tool_calls": [call]}
    param = refused(InvalidRequest, messages=[USER, assistant])
    assert param == "messages[1].tool_calls[0].function.arguments"


def test_user_after_plain_user_is_not_merged():
    out = convert(messages=[USER, {"role": "user", "content": "again"}])
    assert len(out["messages"]) == 2


# --- response ----------------------------------------------------------------


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
            "message": {"role": "assistant", "content": "Hello, world", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
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


# --- stream ------------------------------------------------------------------


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
    assert stream.usage == {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    # Recent API versions repeat the (cumulative) input counts in message_delta.
    stream.feed(*message_delta("end_turn", 40, input_tokens=6, cache_read_input_tokens=5))
    assert stream.usage == {"prompt_tokens": 11, "completion_tokens": 40, "total_tokens": 51}
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
    assert not any("Two cities" in json.dumps(c) for c in chunks)
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
