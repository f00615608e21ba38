"""Tests for the sandbox provider's streams, tool calls, legacy completions and embeddings, over real HTTP.

Plain answers, auth, directives, admin endpoints and the CLI: test_sandbox_provider.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import time
import uuid
from types import SimpleNamespace

import anthropic
import openai
import pytest
import requests

from sandbox.provider import embed
from sandbox.provider_stream import Answer, StreamRun, chat_events, fragments, pieces
from tests.unit import sandbox_fixtures
from tests.unit.sandbox_fixtures import (
    ANTHROPIC_HEADERS,
    SECRET,
    chat,
    chat_body,
    messages,
    messages_body,
    post_stream,
    sse,
    streams,
    wait_for,
)

server, base, keyed = sandbox_fixtures.server, sandbox_fixtures.base, sandbox_fixtures.keyed


def stream_entry(base, key, reason=None):
    """Wait until the stream with `key` has ended; return its record."""
    def ended():
        return [s for s in streams(base) if s["key"] == key and s["ended"] is not None]
    [entry] = wait_for(ended)
    if reason:
        assert entry["reason"] == reason
    return entry


# --- pure helpers ---

def test_pieces_and_fragments_join_back():
    assert pieces("Sandbox reply: a  b ") == ["Sandbox ", "reply: ", "a  ", "b "]
    assert pieces("") == []
    assert fragments('{"query": "x"}') == ['{"qu', 'ery":', ' "x"}']
    assert "".join(fragments("ab")) == "ab"


# --- streaming ---

def test_openai_stream_matches_the_plain_answer(base):
    for content, extra in [("hello  streaming world", {}), ("alpha beta gamma", {"stop": "gamma"}),
                           ("one two three four", {"max_tokens": 3})]:
        plain = chat(base, content, **extra).json()
        r, raw = post_stream(base, "/v1/chat/completions", chat_body(content, stream=True, **extra))
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/event-stream"
        assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
        events = sse(r)
        assert events[-1] == (None, "[DONE]")
        chunks = [data for _, data in events[:-1]]
        assert {c["id"] for c in chunks} == {"chatcmpl-sbx-" + hashlib.sha256(raw).hexdigest()[:12]}
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert {c["model"] for c in chunks} == {"gpt-test"}
        assert all("usage" not in c for c in chunks)
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        words = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
        reply = plain["choices"][0]["message"]["content"]
        assert "".join(words) == reply
        assert len(words) == len(reply.split())
        assert all(w.endswith(" ") and " " not in w[:-1] for w in words[:-1])
        last = chunks[-1]["choices"][0]
        assert last["delta"] == {} and last["finish_reason"] == plain["choices"][0]["finish_reason"]
    assert words == ["Sandbox ", "reply: ", "one"]  # the max_tokens case: the last word has no space


def test_openai_stream_include_usage(base):
    plain = chat(base, "count these words").json()
    r, _ = post_stream(base, "/v1/chat/completions",
                       chat_body("count these words", stream=True, stream_options={"include_usage": True}))
    events = sse(r)
    assert [data for _, data in events[-1:]] == ["[DONE]"]
    usage_chunk = events[-2][1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"] == plain["usage"]
    assert all(data["usage"] is None for _, data in events[:-2])
    r, _ = post_stream(base, "/v1/chat/completions",
                       chat_body("count these words", stream=True, stream_options={"include_usage": False}))
    assert all(data == "[DONE]" or (data["choices"] and "usage" not in data) for _, data in sse(r))


def test_openai_sdk_streams(base):
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    msgs = [{"role": "user", "content": "stream this please"}]
    plain = client.chat.completions.create(model="gpt-test", messages=msgs)
    chunks = list(client.chat.completions.create(model="gpt-test", messages=msgs, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content == "Sandbox reply: stream this please"
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    with client.chat.completions.stream(model="gpt-test", messages=msgs) as stream:
        assert stream.get_final_completion().choices[0].message.content == text
    # a session reuses its connection after a finished (chunked) stream
    session = requests.Session()
    for _ in range(2):
        r = session.post(f"{base}/v1/chat/completions", json=chat_body("again", stream=True), stream=True, timeout=5)
        assert sse(r)[-1] == (None, "[DONE]")


def test_anthropic_stream_events(base):
    for extra in ({}, {"stop_sequences": ["green"]}, {"max_tokens": 3}):
        plain = messages(base, "red green blue", **extra).json()
        r, raw = post_stream(base, "/v1/messages", messages_body("red green blue", stream=True, **extra),
                             headers=ANTHROPIC_HEADERS)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
        events = sse(r)
        names = [name for name, _ in events]
        deltas = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
        assert names == ["message_start", "ping", "content_block_start", *["content_block_delta"] * len(deltas),
                         "content_block_stop", "message_delta", "message_stop"]
        assert all(data["type"] == name for name, data in events)
        start = events[0][1]["message"]
        assert start["id"] == "msg_sbx_" + hashlib.sha256(raw).hexdigest()[:24] and start["model"] == "claude-test"
        assert start["content"] == [] and start["stop_reason"] is None
        assert start["usage"] == {"input_tokens": plain["usage"]["input_tokens"], "output_tokens": 1}
        assert events[2][1]["content_block"] == {"type": "text", "text": ""}
        assert "".join(deltas) == plain["content"][0]["text"]
        delta = events[-2][1]
        assert delta["delta"] == {"stop_reason": plain["stop_reason"], "stop_sequence": plain["stop_sequence"]}
        assert delta["usage"] == {"output_tokens": plain["usage"]["output_tokens"]}
    assert delta["delta"]["stop_reason"] == "max_tokens"


def test_anthropic_sdk_streams(base):
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    msgs = [{"role": "user", "content": "stream this please"}]
    plain = client.messages.create(model="claude-test", max_tokens=50, messages=msgs)
    events = list(client.messages.create(model="claude-test", max_tokens=50, messages=msgs, stream=True))
    assert [e.type for e in events][:2] == ["message_start", "content_block_start"]  # the SDK skips ping
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == plain.content[0].text
    with client.messages.stream(model="claude-test", max_tokens=50, messages=msgs) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == plain.content[0].text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == plain.usage.output_tokens


def test_stream_rejects_bad_requests_before_streaming(base):
    r = chat(base, "hi [[sandbox bogus=1]]", stream=True)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json"
    assert chat(base, "hi", stream="yes").status_code == 400
    r = messages(base, "hi", stream=True, max_tokens=0)
    assert r.status_code == 400 and r.json()["type"] == "error"


# --- tool calls ---

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


# --- legacy completions ---

def complete(base, prompt, headers=None, **extra):
    return requests.post(f"{base}/v1/completions", json={"model": "code-test", "prompt": prompt, **extra},
                         headers=headers, timeout=10)


def test_completions_fill_in_the_middle(base):
    r = requests.post(f"{base}/v1/completions", timeout=5, data=json.dumps(
        {"model": "code-test", "prompt": "def add(a, b):\n    return", "suffix": "\n\nprint(add(1, 2))  # 3"}).encode())
    data = r.json()
    assert data["id"] == "cmpl-sbx-" + hashlib.sha256(r.request.body).hexdigest()[:12]
    assert data["object"] == "text_completion" and data["model"] == "code-test" and isinstance(data["created"], int)
    assert data["choices"] == [{"text": "Sandbox completion of: def add(a, b): return [before: print(add(1, 2)) #]",
                                "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert data["usage"] == {"prompt_tokens": 8, "completion_tokens": 11, "total_tokens": 19}
    assert complete(base, ["a b", "c"]).json()["choices"][0]["text"] == "Sandbox completion of: a b c"
    cut = complete(base, "x y z", max_tokens=4).json()["choices"][0]
    assert cut == {"text": "Sandbox completion of: x", "index": 0, "logprobs": None, "finish_reason": "length"}
    assert complete(base, "x y z", stop=["y"]).json()["choices"][0]["text"] == "Sandbox completion of: x "
    assert complete(base, "x [[sandbox fail=503]]").status_code == 503
    assert complete(base, [1, 2, 3]).status_code == 400
    assert complete(base, "x", suffix=5).status_code == 400
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    done = client.completions.create(model="code-test", prompt="one two", suffix="three")
    assert done.choices[0].text == "Sandbox completion of: one two [before: three]"


def test_completions_stream(base):
    body = {"model": "code-test", "prompt": "the quick brown fox", "suffix": "jumps over"}
    plain = requests.post(f"{base}/v1/completions", json=body, timeout=5).json()
    r, _ = post_stream(base, "/v1/completions", {**body, "stream": True})
    assert r.headers["Content-Type"] == "text/event-stream"
    events = [data for _, data in sse(r)]
    assert events[-1] == "[DONE]"
    texts = [e["choices"][0]["text"] for e in events[:-2]]
    assert "".join(texts) == plain["choices"][0]["text"] and len(texts) == len(plain["choices"][0]["text"].split())
    assert {e["object"] for e in events[:-1]} == {"text_completion"}
    assert events[-2]["choices"][0] == {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    chunks = list(client.completions.create(model="code-test", prompt=body["prompt"], suffix=body["suffix"],
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain["choices"][0]["text"]
    assert chunks[-1].usage.total_tokens == plain["usage"]["total_tokens"]


def test_completions_auth(keyed):
    assert complete(keyed, "x").status_code == 401
    assert complete(keyed, "x", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    r = requests.post(f"{keyed}/v1/embeddings", json={"model": "e", "input": "x"}, timeout=5)
    assert r.status_code == 401


# --- embeddings ---

def embeddings(base, **body):
    return requests.post(f"{base}/v1/embeddings", json={"model": "embed-test", **body}, timeout=5)


def test_embeddings_are_deterministic(base):
    data = embeddings(base, input=["hello world", "hello world", "other text"]).json()
    assert data["object"] == "list" and data["model"] == "embed-test"
    assert data["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    first, same, other = data["data"]
    assert [d["index"] for d in data["data"]] == [0, 1, 2] and first["object"] == "embedding"
    assert len(first["embedding"]) == 8 and all(-1 <= v <= 1 for v in first["embedding"])
    assert first["embedding"] == same["embedding"] != other["embedding"]
    assert embeddings(base, input="hello world").json()["data"][0]["embedding"] == first["embedding"]
    ints = struct.unpack("<8i", hashlib.sha256(b"hello world").digest())
    assert first["embedding"] == pytest.approx([n / 2**31 for n in ints], abs=1e-7)
    wide = embeddings(base, input="hello world", dimensions=20).json()["data"][0]["embedding"]
    assert len(wide) == 20 and wide[:8] == first["embedding"] and all(-1 <= v <= 1 for v in wide)
    tokens = embeddings(base, input=[[1, 2, 3], [4]]).json()
    assert [d["embedding"] for d in tokens["data"]] == [embed("1 2 3"), embed("4")]
    assert tokens["usage"]["prompt_tokens"] == 4
    assert embeddings(base, input=[5, 6]).json()["data"][0]["embedding"] == embed("5 6")
    for bad in ({"input": None}, {"input": []}, {"input": [1, "a"]}, {"input": "x", "dimensions": 0},
                {"input": "x", "encoding_format": "hex"}):
        r = embeddings(base, **bad)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert embeddings(base, input="x [[sandbox fail=500]]").status_code == 500


def test_embeddings_base64_and_sdk(base):
    floats = embeddings(base, input=["a b", "c"]).json()["data"]
    encoded = embeddings(base, input=["a b", "c"], encoding_format="base64").json()["data"]
    for plain, packed in zip(floats, encoded, strict=True):
        raw = base64.b64decode(packed["embedding"])
        assert list(struct.unpack("<8f", raw)) == plain["embedding"]
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    done = client.embeddings.create(model="embed-test", input=["a b", "c"])  # the SDK asks for base64
    assert [d.embedding for d in done.data] == [d["embedding"] for d in floats]
    assert done.usage.prompt_tokens == 3
    explicit = client.embeddings.create(model="embed-test", input="a b", encoding_format="float", dimensions=4)
    assert explicit.data[0].embedding == floats[0]["embedding"][:4]


# --- stream directives ---

def test_fail_after_drops_the_stream(base):
    r, _ = post_stream(base, "/v1/chat/completions", chat_body("a b c d [[sandbox fail_after=2]]", stream=True),
                       headers={"X-Request-Id": "drop-1"})
    seen = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in r.iter_lines(decode_unicode=True):
            seen.append(line)
    contents = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in seen if line]
    assert contents == ["", "Sandbox ", "reply: "]  # the role chunk, then exactly 2 words; no [DONE]
    entry = stream_entry(base, "drop-1", "failed")
    assert entry["events_sent"] == 3
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        list(client.chat.completions.create(model="m", stream=True,
                                            messages=[{"role": "user", "content": "x y [[sandbox fail_after=1]]"}]))
    aclient = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    got = []
    with pytest.raises(Exception) as err:  # the anthropic SDK lets its transport's error through unwrapped
        for event in aclient.messages.create(model="c", max_tokens=50, stream=True,
                                             messages=[{"role": "user", "content": "x y [[sandbox fail_after=1]]"}]):
            got.append(event.type)
    assert "incomplete chunked read" in str(err.value)
    assert got == ["message_start", "content_block_start", "content_block_delta"]
    # more words asked for than there are: the stream still never finishes
    r, _ = post_stream(base, "/v1/messages", messages_body("x [[sandbox fail_after=50]]", stream=True),
                       headers={**ANTHROPIC_HEADERS, "X-Request-Id": "drop-2"})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        list(r.iter_lines())
    assert stream_entry(base, "drop-2", "failed")["events_sent"] == 6


def test_stream_faults_obey_times(base):
    headers = {"X-Request-Id": f"times-{uuid.uuid4()}"}
    body = chat_body("a b [[sandbox fail_after=1 times=1]]", stream=True)
    r, _ = post_stream(base, "/v1/chat/completions", body, headers=headers)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        list(r.iter_lines())
    r, _ = post_stream(base, "/v1/chat/completions", body, headers=headers)
    assert sse(r)[-1] == (None, "[DONE]")
    assert [s["reason"] for s in streams(base)] == ["failed", "completed"]


def test_error_after_sends_an_error_event(base):
    r, _ = post_stream(base, "/v1/chat/completions", chat_body("a b c [[sandbox error_after=1]]", stream=True))
    events = [data for _, data in sse(r)]  # a well-formed body that ends with the error, without [DONE]
    assert [e["choices"][0]["delta"].get("content") for e in events[:-1]] == ["", "Sandbox "]
    assert events[-1] == {"error": {"message": "sandbox injected stream error", "type": "server_error",
                                    "param": None, "code": "sandbox_injected"}}
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIError, match="sandbox injected stream error"):
        list(client.chat.completions.create(model="m", stream=True,
                                            messages=[{"role": "user", "content": "x [[sandbox error_after=0]]"}]))
    r, _ = post_stream(base, "/v1/messages", messages_body("a b [[sandbox error_after=2]]", stream=True),
                       headers=ANTHROPIC_HEADERS)
    events = sse(r)
    assert [name for name, _ in events][-3:] == ["content_block_delta", "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "overloaded_error",
                                                        "message": "sandbox injected stream error"}}
    aclient = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIError, match="overloaded_error"):
        list(aclient.messages.create(model="c", max_tokens=50, stream=True,
                                     messages=[{"role": "user", "content": "x [[sandbox error_after=1]]"}]))
    with pytest.raises(openai.APIError, match="sandbox injected stream error"):
        list(client.completions.create(model="c", prompt="p q [[sandbox error_after=1]]", stream=True))
    assert {s["reason"] for s in streams(base)} == {"failed"}


def test_silence_ms_delays_the_first_content(base):
    start = time.monotonic()
    r, _ = post_stream(base, "/v1/chat/completions", chat_body("quiet [[sandbox silence_ms=300]]", stream=True))
    arrivals = []
    for line in r.iter_lines(decode_unicode=True):
        if line:
            arrivals.append((time.monotonic() - start, line))
    assert arrivals[-1][1] == "data: [DONE]"
    assert arrivals[1][0] >= 0.3  # the first word
    # the role event goes out before the silence: a client can read it, give up and be noticed
    for path, body, headers in [
        ("/v1/chat/completions", chat_body("quiet [[sandbox silence_ms=30000]]", stream=True), {}),
        ("/v1/messages", messages_body("quiet [[sandbox silence_ms=30000]]", stream=True), ANTHROPIC_HEADERS),
    ]:
        key = f"silent-{uuid.uuid4()}"
        r, _ = post_stream(base, path, body, headers={**headers, "X-Request-Id": key})
        first = next(r.iter_lines(decode_unicode=True))
        assert first == "event: message_start" or first.startswith('data: {"id":"chatcmpl-sbx-')
        r.close()
        entry = stream_entry(base, key, "client_closed")
        assert entry["events_sent"] == 1 and entry["ended"] - entry["started"] < 10


def test_chunk_delay_ms_spaces_the_events(base):
    start = time.monotonic()
    r, _ = post_stream(base, "/v1/messages", messages_body("a b [[sandbox chunk_delay_ms=40]]", stream=True),
                       headers=ANTHROPIC_HEADERS)
    events = sse(r)
    assert len(events) == 10 and time.monotonic() - start >= 9 * 0.04
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    start = time.monotonic()
    chunks = list(client.completions.create(model="c", prompt="x [[sandbox chunk_delay_ms=40]]", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "Sandbox completion of: x"
    assert time.monotonic() - start >= 5 * 0.04  # 4 words, the finish chunk and [DONE]: 5 gaps


def test_streams_shows_a_client_closing_early(base):
    words = " ".join(f"w{i}" for i in range(50))
    r, _ = post_stream(base, "/v1/chat/completions", chat_body(f"{words} [[sandbox chunk_delay_ms=100]]",
                                                               stream=True), headers={"X-Request-Id": "early"})
    lines = r.iter_lines(decode_unicode=True)
    assert next(lines).startswith("data: ") and next(lines) == "" and "Sandbox " in next(lines)
    r.close()
    entry = stream_entry(base, "early", "client_closed")
    assert 2 <= entry["events_sent"] < 10
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    stream = client.chat.completions.create(
        model="m", stream=True, messages=[{"role": "user", "content": f"{words} [[sandbox chunk_delay_ms=100]]"}],
        extra_headers={"X-Request-Id": "early-sdk"})
    assert next(iter(stream)).choices[0].delta.role == "assistant"
    stream.close()
    assert stream_entry(base, "early-sdk", "client_closed")["events_sent"] < 10


def test_stream_write_failure_counts_as_client_closed():
    class Gone:
        def write(self, data):
            raise BrokenPipeError

        def flush(self):
            pass

    sent = []
    handler = SimpleNamespace(request_version="HTTP/1.1", wfile=Gone(), close_connection=False,
                              connection=None, send_response=sent.append, send_header=lambda *a: sent.append(a),
                              end_headers=lambda: None)
    record = {"key": "k", "started": 0, "ended": None, "events_sent": 0, "reason": None}
    events = chat_events(Answer("id", "m", 1, 2, text="a b"), include_usage=False)
    StreamRun(handler, events, b"", {}, True, record, threading.Lock()).run()
    assert record["reason"] == "client_closed" and record["events_sent"] == 0 and record["ended"]
    assert handler.close_connection is True and sent[0] == 200


def test_faults_apply_to_streams_before_any_byte(base):
    r, _ = post_stream(base, "/v1/chat/completions", chat_body("x [[sandbox fail=503]]", stream=True))
    assert r.status_code == 503 and r.json()["error"]["message"] == "sandbox injected 503"
    with pytest.raises(requests.ConnectionError):
        post_stream(base, "/v1/messages", messages_body("x [[sandbox close]]", stream=True),
                    headers=ANTHROPIC_HEADERS)
    with pytest.raises(requests.ReadTimeout):
        post_stream(base, "/v1/chat/completions", chat_body("x [[sandbox hang]]", stream=True),
                    headers={"X-Request-Id": "stream-hang"}, timeout=0.3)
    [hang] = wait_for(lambda: [h for h in requests.get(f"{base}/_sandbox/hangs", timeout=5).json()
                               if h["key"] == "stream-hang" and h["ended"]])
    assert hang["reason"] == "client_closed"
    assert streams(base) == []  # none of them got as far as a stream
    log = requests.get(f"{base}/_sandbox/log", timeout=5).json()["requests"]
    assert [e["stream"] for e in log] == [True, True, True]


def test_http10_client_gets_an_unchunked_stream(base):
    body = json.dumps(chat_body("old client", stream=True)).encode()
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert payload.endswith(b"data: [DONE]\n\n") and b'"delta":{"content":"Sandbox "}' in payload


