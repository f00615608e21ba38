"""OpenAI chat tools -> Anthropic tools: definitions, tool_choice, tool calls and results in the history."""

import json

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter
from tests.unit.translate_anthropic_helpers import USER, convert, refused
from workers.translate.anthropic import anthropic_response_to_chat

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
