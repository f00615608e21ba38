"""Tests for the sandbox provider's streams over real HTTP: OpenAI- and Anthropic-shaped SSE, SDKs, HTTP/1.0.

Tool calls: test_sandbox_provider_tools.py. Legacy completions and embeddings: test_sandbox_provider_completions.py.
Stream directives (faults, delays, clients closing early): test_sandbox_provider_stream_faults.py.
Plain answers, auth, directives, admin endpoints and the CLI: test_sandbox_provider.py.
"""

from __future__ import annotations

import hashlib
import json
import socket

import anthropic
import openai
import requests

from sandbox.provider_stream import fragments, pieces
from tests.unit.sandbox_fixtures import (
    ANTHROPIC_HEADERS,
    chat,
    chat_body,
    messages,
    messages_body,
    post_stream,
    sse,
)

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
