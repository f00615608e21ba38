"""Tests for an Anthropic Messages request translated into an OpenAI chat request (anthropic_client_request)."""

import json

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter
from workers.translate.anthropic import chat_request_to_anthropic
from workers.translate.anthropic_client_request import messages_request_to_chat

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
        ("context_management", {"edits": [{"type": "clear_tool_uses_20250919"}]}),
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
    assert refused(InvalidRequest, messages=[{"role": "system", "content": "x"}]) == "messages"
    assert refused(InvalidRequest, messages=[{"role": "developer", "content": "x"}]) == "messages[0].role"
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
