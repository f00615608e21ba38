"""Tests for the sandbox provider's tool calls over real HTTP: ``[[sandbox tool=...]]``, plain and streamed.

Covers OpenAI tool_calls and Anthropic tool_use answers, a tool result sent back in the next turn, the
directive's JSON `args` and `tool_choice` none. The Responses API's tool calls: test_sandbox_provider_responses.py.
"""

from __future__ import annotations

import hashlib
import json

import anthropic
import openai
import requests

from tests.unit.sandbox_fixtures import (
    ANTHROPIC_HEADERS,
    chat,
    chat_body,
    messages,
    messages_body,
    post_stream,
    sse,
)

OPENAI_TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
ANTHROPIC_TOOLS = [{"name": "search", "input_schema": {"type": "object"}}]


def test_openai_tool_call(base):
    r = requests.post(f"{base}/v1/chat/completions", timeout=5,
                      data=json.dumps(chat_body("find [[sandbox tool=search]] cats", tools=OPENAI_TOOLS)).encode())
    raw = r.request.body
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call == {"id": "call_sbx_" + hashlib.sha256(raw).hexdigest()[:24], "type": "function",
                    "function": {"name": "search", "arguments": json.dumps({"query": "find cats"})}}
    # no such tool in the request: an ordinary text answer
    plain = chat(base, "find [[sandbox tool=missing]] cats", tools=OPENAI_TOOLS).json()["choices"][0]
    assert plain["message"]["content"] == "Sandbox reply: find cats" and "tool_calls" not in plain["message"]
    assert chat(base, "find [[sandbox tool=search]] cats").json()["choices"][0]["finish_reason"] == "stop"
    assert chat(base, "x [[sandbox tool=search]]", tools={"a": 1}).status_code == 400
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    done = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "find cats [[sandbox tool=search]]"}], tools=OPENAI_TOOLS)
    assert json.loads(done.choices[0].message.tool_calls[0].function.arguments) == {"query": "find cats"}


def test_openai_tool_call_streamed(base):
    body = chat_body("find cats [[sandbox tool=search]]", tools=OPENAI_TOOLS, stream=True)
    r, _ = post_stream(base, "/v1/chat/completions", body)
    events = [data for _, data in sse(r)]
    assert events[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert deltas[0] == {"role": "assistant", "content": None}
    [header] = deltas[1]["tool_calls"]
    assert header["index"] == 0 and header["id"].startswith("call_sbx_") and header["type"] == "function"
    assert header["function"] == {"name": "search", "arguments": ""}
    parts = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:-1]]
    assert len(parts) == 3 and all(parts)
    assert json.loads("".join(parts)) == {"query": "find cats"}
    assert deltas[-1] == {} and events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    with client.chat.completions.stream(model="m", messages=body["messages"], tools=OPENAI_TOOLS) as stream:
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "search" and json.loads(call.function.arguments) == {"query": "find cats"}
    assert final.choices[0].finish_reason == "tool_calls"


def test_anthropic_tool_use(base):
    data = messages(base, "find dogs [[sandbox tool=search]]", tools=ANTHROPIC_TOOLS).json()
    [block] = data["content"]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_sbx_") and block["name"] == "search"
    assert block["input"] == {"query": "find dogs"}
    assert data["stop_reason"] == "tool_use" and data["stop_sequence"] is None
    r, _ = post_stream(base, "/v1/messages",
                       messages_body("find dogs [[sandbox tool=search]]", tools=ANTHROPIC_TOOLS, stream=True),
                       headers=ANTHROPIC_HEADERS)
    events = sse(r)
    started = events[2][1]["content_block"]
    assert started == {"type": "tool_use", "id": started["id"], "name": "search", "input": {}}
    assert started["id"].startswith("toolu_sbx_") and started["id"] != block["id"]  # another body, another id
    deltas = [d["delta"] for name, d in events if name == "content_block_delta"]
    assert [d["type"] for d in deltas] == ["input_json_delta"] * 3
    assert json.loads("".join(d["partial_json"] for d in deltas)) == {"query": "find dogs"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    with client.messages.stream(model="c", max_tokens=50, tools=ANTHROPIC_TOOLS,
                                messages=[{"role": "user", "content": "find dogs [[sandbox tool=search]]"}]) as s:
        final = s.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"query": "find dogs"}
    assert final.stop_reason == "tool_use"


def test_tool_round_trip_openai(base):
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    history = [{"role": "user", "content": "weather in Paris [[sandbox tool=search]]"}]
    call = client.chat.completions.create(model="m", messages=history, tools=OPENAI_TOOLS).choices[0].message
    history += [call.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.tool_calls[0].id, "content": "sunny,  21 C"}]
    done = client.chat.completions.create(model="m", messages=history, tools=OPENAI_TOOLS)
    assert done.choices[0].message.content == "Sandbox reply: tool said sunny, 21 C"
    assert done.choices[0].finish_reason == "stop" and not done.choices[0].message.tool_calls
    streamed = client.chat.completions.create(model="m", messages=history, tools=OPENAI_TOOLS, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == done.choices[0].message.content


def test_tool_round_trip_anthropic(base):
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    history = [{"role": "user", "content": "weather in Paris [[sandbox tool=search]]"}]
    first = client.messages.create(model="c", max_tokens=50, messages=history, tools=ANTHROPIC_TOOLS)
    history += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[0].id,
                                              "content": [{"type": "text", "text": "sunny 21 C"}]}]}]
    done = client.messages.create(model="c", max_tokens=50, messages=history, tools=ANTHROPIC_TOOLS)
    assert done.content[0].text == "Sandbox reply: tool said sunny 21 C" and done.stop_reason == "end_turn"
    assert done.usage.input_tokens == 3 + 3  # the question and the tool result
    # a later plain question is a new turn, not a tool result
    history += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "thanks"}]
    assert client.messages.create(model="c", max_tokens=50, messages=history).content[0].text == (
        "Sandbox reply: thanks")


def test_directive_args_in_every_format(base):
    directive = '[[sandbox tool=search args={"q": "cats ]] dogs", "limit": [1, 2]}]] find'
    call = chat(base, directive, tools=OPENAI_TOOLS).json()["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"q": "cats ]] dogs", "limit": [1, 2]}
    [use] = messages(base, directive, tools=ANTHROPIC_TOOLS).json()["content"]
    assert use["input"] == {"q": "cats ]] dogs", "limit": [1, 2]}
    r, _ = post_stream(base, "/v1/messages", messages_body(directive, tools=ANTHROPIC_TOOLS, stream=True),
                       headers=ANTHROPIC_HEADERS)
    parts = [d["delta"]["partial_json"] for name, d in sse(r) if name == "content_block_delta"]
    assert json.loads("".join(parts)) == use["input"]
    # a function's arguments are an object: a string is refused, in the endpoint's format
    r = chat(base, '[[sandbox tool=search args="text"]]', tools=OPENAI_TOOLS)
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    r = messages(base, '[[sandbox tool=search args="text"]]', tools=ANTHROPIC_TOOLS)
    assert r.status_code == 400 and r.json()["type"] == "error"


def test_tool_choice_none_answers_in_text(base):
    choice = chat(base, "x [[sandbox tool=search]]", tools=OPENAI_TOOLS, tool_choice="none").json()["choices"][0]
    assert choice["message"]["content"] == "Sandbox reply: x" and choice["finish_reason"] == "stop"
    data = messages(base, "x [[sandbox tool=search]]", tools=ANTHROPIC_TOOLS, tool_choice={"type": "none"}).json()
    assert data["content"] == [{"type": "text", "text": "Sandbox reply: x"}]
    assert messages(base, "x [[sandbox tool=search]]", tools=ANTHROPIC_TOOLS,
                    tool_choice={"type": "auto"}).json()["stop_reason"] == "tool_use"


def test_instructions_after_a_tool_result_leave_it_the_newest_turn(base):
    history = [{"role": "user", "content": "q [[sandbox tool=search]]"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "found it"},
               {"role": "system", "content": "be brief"}, {"role": "developer", "content": "really"}]
    r = requests.post(f"{base}/v1/chat/completions", json=chat_body("", messages=history, tools=OPENAI_TOOLS),
                      timeout=5)
    assert r.json()["choices"][0]["message"]["content"] == "Sandbox reply: tool said found it"
