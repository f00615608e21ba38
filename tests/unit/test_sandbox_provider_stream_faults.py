"""Tests for the sandbox provider's stream directives over real HTTP: faults and delays mid-stream.

Covers ``fail_after``, ``error_after``, ``silence_ms``, ``chunk_delay_ms``, clients closing early (the
``/_sandbox/streams`` record) and faults that hit a streamed request before any byte is sent.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from types import SimpleNamespace

import anthropic
import openai
import pytest
import requests

from sandbox.provider_stream import Answer, StreamRun, chat_events
from tests.harness import wait_for
from tests.unit.sandbox_fixtures import (
    ANTHROPIC_HEADERS,
    chat_body,
    messages_body,
    post_stream,
    sse,
    streams,
)


def stream_entry(base, key, reason=None):
    """Wait until the stream with `key` has ended; return its record."""
    def ended():
        return [s for s in streams(base) if s["key"] == key and s["ended"] is not None]
    [entry] = wait_for(ended, timeout=10, message="the stream to end")
    if reason:
        assert entry["reason"] == reason
    return entry


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
                               if h["key"] == "stream-hang" and h["ended"]],
                         timeout=10, message="the hung stream to end")
    assert hang["reason"] == "client_closed"
    assert streams(base) == []  # none of them got as far as a stream
    log = requests.get(f"{base}/_sandbox/log", timeout=5).json()["requests"]
    assert [e["stream"] for e in log] == [True, True, True]
