"""Tests for the sandbox provider, over real HTTP on loopback: plain answers, auth, directives, admin, CLI.

Streaming: test_sandbox_provider_stream.py (and _stream_faults.py); tool calls:
test_sandbox_provider_tools.py; legacy completions and embeddings: test_sandbox_provider_completions.py;
the Responses API: _responses.py; count_tokens and the Anthropic beta check: _anthropic.py; reasoning:
_reasoning.py; the directive syntax: _directives.py; the bounded log and store: _state.py.
"""

from __future__ import annotations

import hashlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import anthropic
import openai
import pytest
import requests

from sandbox.provider import make_reply, parse_directive, serve_in_thread
from tests.harness import wait_for
from tests.unit.sandbox_fixtures import (
    ANTHROPIC_HEADERS,
    SECRET,
    calls,
    chat,
    chat_body,
    messages,
    post_stream,
    sse,
    streams,
)

ROOT = Path(__file__).resolve().parents[2]


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

    [hang] = wait_for(finished, timeout=10, message="the hung request to end")
    assert hang["reason"] == "client_closed"
    assert hang["ended"] >= hang["started"]


def test_hang_times_out_and_closes(sandbox, base):
    srv, _ = sandbox
    srv.hang_timeout = 0.2
    try:
        with pytest.raises(requests.ConnectionError):
            chat(base, "wait [[sandbox hang]]", headers={"X-Request-Id": "hang-timeout"}, timeout=10)
    finally:
        srv.hang_timeout = 300.0
    [hang] = requests.get(f"{base}/_sandbox/hangs", timeout=5).json()
    assert hang["key"] == "hang-timeout" and hang["reason"] == "timeout"


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
