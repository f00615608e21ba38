"""Tests for the sandbox provider, over real HTTP on loopback."""

from __future__ import annotations

import base64
import hashlib
import json
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import anthropic
import openai
import pytest
import requests

from sandbox.provider import embed, make_reply, parse_directive, serve_in_thread
from sandbox.provider_stream import Answer, StreamRun, chat_events, fragments, pieces

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-sandbox-secret-123"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def server():
    srv, base = serve_in_thread()
    yield srv, base
    srv.stop()


@pytest.fixture
def base(server):
    srv, url = server
    srv.reset()
    return url


@pytest.fixture(scope="module")
def keyed():
    srv, url = serve_in_thread(api_key=SECRET)
    yield url
    srv.stop()


def chat(base, content, headers=None, timeout=10, **extra):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}
    return requests.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def messages(base, content, headers=None, **extra):
    body = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return requests.post(f"{base}/v1/messages", json=body, headers={**ANTHROPIC_HEADERS, **(headers or {})},
                         timeout=10)


def calls(base, key):
    return requests.get(f"{base}/_sandbox/calls", params={"key": key}, timeout=5).json()["count"]


def sse(response):
    """Parse a streamed requests response into [(event name or None, decoded data)]."""
    events, name, data = [], None, []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif not line and data:
            text = "\n".join(data)
            events.append((name, text if text == "[DONE]" else json.loads(text)))
            name, data = None, []
    return events


def post_stream(base, path, body, headers=None, timeout=10):
    data = json.dumps(body).encode()
    response = requests.post(f"{base}{path}", data=data, timeout=timeout, stream=True,
                             headers={"Content-Type": "application/json", **(headers or {})})
    return response, data


def chat_body(content, **extra):
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}


def messages_body(content, **extra):
    return {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": content}], **extra}


def streams(base):
    return requests.get(f"{base}/_sandbox/streams", timeout=5).json()


def stream_entry(base, key, reason=None):
    """Wait until the stream with `key` has ended; return its record."""
    def ended():
        return [s for s in streams(base) if s["key"] == key and s["ended"] is not None]
    [entry] = wait_for(ended)
    if reason:
        assert entry["reason"] == reason
    return entry


def wait_for(predicate, timeout=10.0):
    """Poll until predicate() is truthy (returning it) or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    pytest.fail("condition not met before the deadline")


# --- pure helpers ---

def test_parse_directive_strips_and_parses():
    text, opts = parse_directive("hi [[sandbox fail=503 times=2 retry_after=3 delay_ms=5 hang close]]  there")
    assert text == "hi there"
    assert opts == {"fail": 503, "times": 2, "retry_after": "3", "delay_ms": 5, "hang": True, "close": True}
    with pytest.raises(ValueError):
        parse_directive("[[sandbox fial=503]]")
    with pytest.raises(ValueError):
        parse_directive("[[sandbox fail=200]]")


def test_parse_directive_stream_and_tool_keys():
    text, opts = parse_directive("[[sandbox tool=web_search chunk_delay_ms=5 silence_ms=10 fail_after=2]] q "
                                 "[[sandbox error_after=0]]")
    assert text == "q"
    assert opts == {"tool": "web_search", "chunk_delay_ms": 5, "silence_ms": 10, "fail_after": 2, "error_after": 0}
    for bad in ("tool", "tool=", "tool=a/b", "fail_after=-1", "silence_ms=x", "chunk_delay=5"):
        with pytest.raises(ValueError):
            parse_directive(f"[[sandbox {bad}]]")


def test_pieces_and_fragments_join_back():
    assert pieces("Sandbox reply: a  b ") == ["Sandbox ", "reply: ", "a  ", "b "]
    assert pieces("") == []
    assert fragments('{"query": "x"}') == ['{"qu', 'ery":', ' "x"}']
    assert "".join(fragments("ab")) == "ab"


def test_make_reply_limit_races_stop_sequence():
    assert make_reply("a b c d", 3, ["c"]) == ("Sandbox reply: a", "length", None)
    # the earliest occurrence wins, whichever stop sequence is listed first
    assert make_reply("A B C D", 10, ["D", "B"]) == ("Sandbox reply: A ", "stop_sequence", "B")
    assert make_reply("a b", None, []) == ("Sandbox reply: a b", "end", None)


# --- OpenAI endpoint ---

def test_openai_reply_and_usage(base):
    body = {"model": "gpt-test", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first   question"},
        {"role": "assistant", "content": None},
        {"role": "user", "content": [{"type": "text", "text": "hello\n  world"}, {"type": "image_url"}]},
    ]}
    raw = json.dumps(body).encode()
    r = requests.post(f"{base}/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"},
                      timeout=10)
    assert r.status_code == 200
    data = r.json()
    assert data["id"] == "chatcmpl-sbx-" + hashlib.sha256(raw).hexdigest()[:12]
    assert data["model"] == "gpt-test" and data["object"] == "chat.completion"
    choice = data["choices"][0]
    assert choice["message"] == {
        "role": "assistant", "content": "Sandbox reply: hello world", "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10}
    assert r.headers["Content-Length"] == str(len(r.content))


def test_openai_sdk_parses(base):
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    done = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "ping"}])
    assert done.choices[0].message.content == "Sandbox reply: ping"
    assert done.usage.total_tokens == 4
    assert [m.id for m in client.models.list()] == ["sandbox-model"]


def test_openai_max_tokens_truncates(base):
    data = chat(base, "one two three four", max_tokens=3).json()
    assert data["choices"][0]["message"]["content"] == "Sandbox reply: one"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3
    # max_completion_tokens wins over the legacy field
    data = chat(base, "one two three four", max_tokens=50, max_completion_tokens=4).json()
    assert data["choices"][0]["message"]["content"] == "Sandbox reply: one two"


def test_openai_stop_sequences(base):
    data = chat(base, "alpha beta gamma", stop="gamma").json()
    assert data["choices"][0]["message"]["content"] == "Sandbox reply: alpha beta "
    assert data["choices"][0]["finish_reason"] == "stop"
    data = chat(base, "alpha beta gamma", stop=["gamma", "beta"]).json()
    assert data["choices"][0]["message"]["content"] == "Sandbox reply: alpha "


def test_openai_bad_requests(base):
    r = requests.post(f"{base}/v1/chat/completions", data=b"{nope", timeout=5)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = requests.post(f"{base}/v1/chat/completions", json={"model": "m"}, timeout=5)
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    assert chat(base, "hi", max_tokens="ten").status_code == 400
    r = chat(base, "hi [[sandbox explode]]")
    assert r.status_code == 400 and "explode" in r.json()["error"]["message"]


def test_unknown_path_and_wrong_method(base):
    r = requests.get(f"{base}/v2/nothing", timeout=5)
    assert r.status_code == 404 and "error" in r.json()
    r = requests.get(f"{base}/v1/chat/completions", timeout=5)
    assert r.status_code == 405


def test_models_list(base):
    r = requests.get(f"{base}/v1/models", timeout=5)
    assert r.json() == {"object": "list", "data": [
        {"id": "sandbox-model", "object": "model", "created": 0, "owned_by": "sandbox"}]}


# --- Anthropic endpoint ---

def test_anthropic_reply_usage_and_system(base):
    r = messages(base, [{"type": "text", "text": "tell me"}, {"type": "image"}],
                 system=[{"type": "text", "text": "you are terse"}])
    assert r.status_code == 200
    data = r.json()
    assert data["id"].startswith("msg_sbx_") and data["type"] == "message" and data["model"] == "claude-test"
    assert data["content"] == [{"type": "text", "text": "Sandbox reply: tell me"}]
    assert data["stop_reason"] == "end_turn" and data["stop_sequence"] is None
    assert data["usage"] == {"input_tokens": 5, "output_tokens": 4}
    assert messages(base, "tell me", system="one two three").json()["usage"]["input_tokens"] == 5


def test_anthropic_sdk_parses(base):
    client = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0)
    msg = client.messages.create(model="claude-test", max_tokens=2,
                                 messages=[{"role": "user", "content": "a b c"}])
    assert msg.content[0].text == "Sandbox reply:"
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens == 2


def test_anthropic_stop_sequences(base):
    data = messages(base, "red green blue", stop_sequences=["blue", "green"]).json()
    assert data["content"][0]["text"] == "Sandbox reply: red "
    assert data["stop_reason"] == "stop_sequence" and data["stop_sequence"] == "green"


def test_anthropic_validation(base):
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    r = requests.post(f"{base}/v1/messages", json=body, timeout=5)
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                   "message": "anthropic-version header is required"}}
    r = messages(base, "hi", max_tokens=None)
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]
    r = requests.post(f"{base}/v1/messages", data=b"[1,", headers=ANTHROPIC_HEADERS, timeout=5)
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = messages(base, "hi", messages="nope")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


# --- auth ---

def test_auth_off_accepts_anything(base):
    assert chat(base, "hi", headers={"Authorization": "Bearer whatever"}).status_code == 200
    assert messages(base, "hi").status_code == 200


def test_auth_required_when_key_set(keyed):
    assert chat(keyed, "hi").status_code == 401
    r = chat(keyed, "hi", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    assert chat(keyed, "hi", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    assert requests.get(f"{keyed}/v1/models", timeout=5).status_code == 401
    r = messages(keyed, "hi", headers={"x-api-key": "wrong"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    # the Anthropic endpoint wants x-api-key, not a bearer token
    assert messages(keyed, "hi", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 401
    assert messages(keyed, "hi", headers={"x-api-key": SECRET}).status_code == 200


def test_auth_with_sdks(keyed):
    good = openai.OpenAI(base_url=f"{keyed}/v1", api_key=SECRET, max_retries=0)
    assert good.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]).choices
    bad = anthropic.Anthropic(base_url=keyed, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])


# --- fault injection ---

def test_fail_directive_both_formats(base):
    r = chat(base, "hi [[sandbox fail=503]]")
    assert r.status_code == 503
    assert r.json()["error"]["message"] == "sandbox injected 503"
    assert r.json()["error"]["type"] == "server_error"
    r = messages(base, "hi [[sandbox fail=529]]")
    assert r.status_code == 529
    assert r.json() == {
        "type": "error", "error": {"type": "overloaded_error", "message": "sandbox injected 529"}}
    # without `times` it keeps failing
    assert chat(base, "hi [[sandbox fail=503]]").status_code == 503


def test_times_counts_per_request_id(base):
    rid = f"req-{uuid.uuid4()}"
    statuses = [chat(base, "hi [[sandbox fail=500 times=2]]", headers={"X-Request-Id": rid}).status_code
                for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert calls(base, rid) == 3
    # a different request id starts its own count
    other = f"req-{uuid.uuid4()}"
    assert chat(base, "hi [[sandbox fail=500 times=2]]", headers={"X-Request-Id": other}).status_code == 500
    assert calls(base, other) == 1


def test_times_counts_by_body_hash_without_request_id(base):
    content = f"{uuid.uuid4()} [[sandbox fail=429 times=1]]"
    raw = json.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]})

    def send():
        return requests.post(f"{base}/v1/messages", data=raw, headers=ANTHROPIC_HEADERS, timeout=5)

    assert [send().status_code, send().status_code] == [429, 200]
    assert calls(base, hashlib.sha256(raw.encode()).hexdigest()) == 2


def test_retry_after_header(base):
    r = chat(base, "hi [[sandbox fail=429 retry_after=7]]")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert "Retry-After" not in chat(base, "hi [[sandbox fail=429]]").headers
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "[[sandbox fail=429]]"}],
            extra_headers={"X-Request-Id": "sdk-429"},
        )
    assert err.value.response.status_code == 429
    assert calls(base, "sdk-429") == 1  # max_retries=0: exactly one attempt reached the sandbox


def test_delay_ms(base):
    start = time.monotonic()
    r = chat(base, "slow [[sandbox delay_ms=300]]")
    assert time.monotonic() - start >= 0.3
    assert r.json()["choices"][0]["message"]["content"] == "Sandbox reply: slow"


def test_latency_applies_to_model_calls_not_admin():
    srv, url = serve_in_thread(latency_ms=1500)
    try:
        start = time.monotonic()
        assert chat(url, "hi").status_code == 200
        assert time.monotonic() - start >= 1.5
        # admin endpoints are never delayed: a timeout shorter than the latency must be enough
        assert requests.get(f"{url}/_sandbox/log", timeout=1.0).status_code == 200
    finally:
        srv.stop()


def test_close_directive(base):
    rid = f"req-{uuid.uuid4()}"
    with pytest.raises(requests.ConnectionError):
        chat(base, "bye [[sandbox close times=1]]", headers={"X-Request-Id": rid})
    # `times` also bounds `close`: the retry gets an answer
    assert chat(base, "bye [[sandbox close times=1]]", headers={"X-Request-Id": rid}).status_code == 200
    assert calls(base, rid) == 2
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "[[sandbox close]]"}])


def test_hang_ends_when_client_gives_up(base):
    rid = f"hang-{uuid.uuid4()}"
    with pytest.raises(requests.ReadTimeout):
        chat(base, "wait [[sandbox hang]]", headers={"X-Request-Id": rid}, timeout=0.3)

    def finished():
        hangs = requests.get(f"{base}/_sandbox/hangs", timeout=5).json()
        return [h for h in hangs if h["key"] == rid and h["ended"] is not None]

    [hang] = wait_for(finished)
    assert hang["reason"] == "client_closed"
    assert hang["ended"] >= hang["started"]


def test_hang_times_out_and_closes(server, base):
    srv, _ = server
    srv.hang_timeout = 0.2
    try:
        with pytest.raises(requests.ConnectionError):
            chat(base, "wait [[sandbox hang]]", headers={"X-Request-Id": "hang-timeout"}, timeout=10)
    finally:
        srv.hang_timeout = 300.0
    [hang] = requests.get(f"{base}/_sandbox/hangs", timeout=5).json()
    assert hang["key"] == "hang-timeout" and hang["reason"] == "timeout"


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


# --- admin endpoints ---

def test_log_redacts_secrets(keyed):
    requests.post(f"{keyed}/_sandbox/reset", timeout=5)
    chat(keyed, "hi", headers={"Authorization": f"Bearer {SECRET}", "X-Request-Id": "logged"})
    messages(keyed, "hi", headers={"x-api-key": SECRET})
    r = requests.get(f"{keyed}/_sandbox/log", timeout=5)
    assert SECRET not in r.text
    first, second = r.json()["requests"]
    assert first["path"] == "/v1/chat/completions" and first["key"] == "logged"
    assert first["headers"]["authorization"] == f"<redacted len={len('Bearer ' + SECRET)}>"
    assert second["path"] == "/v1/messages"
    assert second["headers"]["x-api-key"] == f"<redacted len={len(SECRET)}>"
    assert second["headers"]["anthropic-version"] == "2023-06-01"
    assert all(name == name.lower() for entry in (first, second) for name in entry["headers"])


def test_reset_clears_state(base):
    chat(base, "hi", headers={"X-Request-Id": "to-reset"})
    assert calls(base, "to-reset") == 1
    assert requests.post(f"{base}/_sandbox/reset", timeout=5).status_code == 200
    assert calls(base, "to-reset") == 0
    assert requests.get(f"{base}/_sandbox/log", timeout=5).json() == {"requests": []}
    r, _ = post_stream(base, "/v1/chat/completions", chat_body("s", stream=True))
    assert sse(r)[-1] == (None, "[DONE]")
    [entry] = streams(base)
    assert entry["reason"] == "completed" and entry["events_sent"] == 6 and entry["ended"] >= entry["started"]
    assert set(entry) == {"key", "started", "ended", "events_sent", "reason"}
    requests.post(f"{base}/_sandbox/reset", timeout=5)
    assert streams(base) == []


# --- command line ---

def test_cli_subprocess_prints_listening_line_and_answers():
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.provider", "--port", "0"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=20)
        prefix = "sandbox provider listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line.strip()[len(prefix):].isdigit()
        url = line.strip().split(" on ")[1]
        assert chat(url, "from cli").json()["choices"][0]["message"]["content"] == "Sandbox reply: from cli"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "SANDBOX PROVIDER" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
