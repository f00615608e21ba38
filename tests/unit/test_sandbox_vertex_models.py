"""Vertex AI stand-in model calls: generate, stream, predict, fault and tool directives, call log, unknown paths."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from sandbox.vertex_answers import vector
from tests.unit.vertex_fixtures import MODEL_URL, generate, sse_events

# --- model endpoints -----------------------------------------------------------------------------


def test_generate_content(standin, token):
    srv, base, path = standin
    answer = generate(base, token, "hello there", systemInstruction={"parts": [{"text": "be nice"}]})
    assert answer.status_code == 200
    body = answer.json()
    candidate = body["candidates"][0]
    assert candidate["content"] == {"role": "model", "parts": [{"text": "Sandbox reply: hello there"}]}
    assert candidate["finishReason"] == "STOP"
    assert body["usageMetadata"] == {"promptTokenCount": 4, "candidatesTokenCount": 4, "totalTokenCount": 8}
    assert body["modelVersion"] == "gemini-test" and body["responseId"]


def test_generation_config_is_honoured(standin, token):
    srv, base, path = standin
    limited = generate(base, token, "one two three four", generationConfig={"maxOutputTokens": 3}).json()
    assert limited["candidates"][0]["content"]["parts"][0]["text"] == "Sandbox reply: one"
    assert limited["candidates"][0]["finishReason"] == "MAX_TOKENS"
    stopped = generate(base, token, "one two three", generationConfig={"stopSequences": [" two"]}).json()
    assert stopped["candidates"][0]["content"]["parts"][0]["text"] == "Sandbox reply: one"
    assert stopped["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize("extra, fragment", [
    ({"generationConfig": {"max_tokens": 5}}, "generation_config.max_tokens"),
    ({"messages": []}, "messages"),
    ({"contents": []}, "contents"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "role"),
    ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, "empty text"),
])
def test_bad_requests_are_refused_like_vertex(standin, token, extra, fragment):
    srv, base, path = standin
    answer = generate(base, token, "hi", **extra)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert fragment in error["message"]


def test_stream_generate_content(standin, token):
    srv, base, path = standin
    answer = generate(base, token, "hello brave new world", "streamGenerateContent?alt=sse")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/event-stream"
    events = sse_events(answer)
    assert len(events) == 6  # one per word of "Sandbox reply: hello brave new world"
    text = "".join(p["text"] for e in events for p in e["candidates"][0]["content"]["parts"])
    assert text == "Sandbox reply: hello brave new world"
    assert all("finishReason" not in e["candidates"][0] and "usageMetadata" not in e for e in events[:-1])
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == 6


def test_stream_needs_alt_sse(standin, token):
    srv, base, path = standin
    answer = generate(base, token, "hi", "streamGenerateContent")
    assert answer.status_code == 400 and answer.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_predict(standin, token):
    srv, base, path = standin
    body = {"instances": [{"content": "hello world"}, {"content": "bye"}]}
    headers = {"Authorization": f"Bearer {token}"}
    first = requests.post(f"{base}{MODEL_URL}:predict", json=body, headers=headers, timeout=10)
    again = requests.post(f"{base}{MODEL_URL}:predict", json=body, headers=headers, timeout=10)
    assert first.status_code == 200
    predictions = first.json()["predictions"]
    assert [len(p["embeddings"]["values"]) for p in predictions] == [8, 8]
    assert [p["embeddings"]["statistics"]["token_count"] for p in predictions] == [2, 1]
    assert predictions[0]["embeddings"]["values"] == vector("hello world", 8)
    assert predictions[0]["embeddings"]["values"] != predictions[1]["embeddings"]["values"]
    assert again.json() == first.json()
    sized = requests.post(f"{base}{MODEL_URL}:predict", headers=headers, timeout=10,
                          json={**body, "parameters": {"outputDimensionality": 3}})
    assert len(sized.json()["predictions"][0]["embeddings"]["values"]) == 3
    bad = requests.post(f"{base}{MODEL_URL}:predict", json={"instances": [{"text": "x"}]}, headers=headers,
                        timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


# --- directives ----------------------------------------------------------------------------------


def test_fail_times_and_retry_after(standin, token):
    srv, base, path = standin
    rid = uuid.uuid4().hex
    text = "hi [[sandbox fail=429 times=2 retry_after=3]]"
    for _ in range(2):
        failed = generate(base, token, text, request_id=rid)
        assert failed.status_code == 429
        assert failed.headers["Retry-After"] == "3"
        assert failed.json()["error"] == {"code": 429, "message": "stand-in injected 429",
                                          "status": "RESOURCE_EXHAUSTED"}
    third = generate(base, token, text, request_id=rid)
    assert third.status_code == 200
    assert third.json()["candidates"][0]["content"]["parts"][0]["text"] == "Sandbox reply: hi"


def test_fail_applies_to_predict(standin, token):
    srv, base, path = standin
    answer = requests.post(f"{base}{MODEL_URL}:predict", headers={"Authorization": f"Bearer {token}"},
                           json={"instances": [{"content": "x [[sandbox fail=503]]"}]}, timeout=10)
    assert answer.status_code == 503 and answer.json()["error"]["status"] == "UNAVAILABLE"


def test_delay_ms(standin, token):
    srv, base, path = standin
    started = time.monotonic()
    answer = generate(base, token, "slow [[sandbox delay_ms=300]]")
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_tool_directive_and_tool_result(standin, token):
    srv, base, path = standin
    call = generate(base, token, "weather in Oslo [[sandbox tool=get_weather]]").json()
    assert call["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"query": "weather in Oslo"}}}]
    assert call["candidates"][0]["finishReason"] == "STOP"
    contents = [
        {"role": "user", "parts": [{"text": "weather in Oslo [[sandbox tool=get_weather]]"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"query": "weather in Oslo"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "snow"}}}]},
    ]
    answer = requests.post(f"{base}{MODEL_URL}:generateContent", json={"contents": contents},
                           headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    assert answer["candidates"][0]["content"]["parts"] == [{"text": "Sandbox reply: tool said snow"}]


def test_a_gemini_3_model_signs_its_calls_and_refuses_them_back_unsigned(standin, token):
    srv, base, path = standin
    url = f"{base}{MODEL_URL.replace('gemini-test', 'gemini-3-pro-preview')}:generateContent"
    headers = {"Authorization": f"Bearer {token}"}
    ask = {"role": "user", "parts": [{"text": "weather in Oslo [[sandbox tool=get_weather]]"}]}
    part = requests.post(url, json={"contents": [ask]}, headers=headers, timeout=10).json()[
        "candidates"][0]["content"]["parts"][0]
    assert part["thoughtSignature"].startswith("++++////")
    result = {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "sun"}}}]}
    unsigned = {"role": "model", "parts": [{"functionCall": part["functionCall"]}]}
    refused = requests.post(url, json={"contents": [ask, unsigned, result]}, headers=headers, timeout=10)
    assert refused.status_code == 400 and "thought_signature" in refused.text
    signed = {"role": "model", "parts": [part]}
    answer = requests.post(url, json={"contents": [ask, signed, result]}, headers=headers, timeout=10)
    assert answer.json()["candidates"][0]["content"]["parts"] == [{"text": "Sandbox reply: tool said sun"}]


def test_tool_directive_streams_one_call(standin, token):
    srv, base, path = standin
    events = sse_events(generate(base, token, "find cats [[sandbox tool=search fail=500 times=0]]",
                                 "streamGenerateContent?alt=sse"))
    assert len(events) == 1
    assert events[0]["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "search", "args": {"query": "find cats"}}}]
    assert events[0]["candidates"][0]["finishReason"] == "STOP"


def test_close_and_hang(standin, token):
    srv, base, path = standin
    with pytest.raises(requests.ConnectionError):
        generate(base, token, "bye [[sandbox close]]")
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{base}{MODEL_URL}:generateContent", headers={"Authorization": f"Bearer {token}"},
                      json={"contents": [{"role": "user", "parts": [{"text": "[[sandbox hang]]"}]}]}, timeout=0.3)
    assert time.monotonic() - started < 5
    assert generate(base, token, "still serving").status_code == 200


def test_bad_directive_is_a_400(standin, token):
    srv, base, path = standin
    answer = generate(base, token, "hi [[sandbox explode]]")
    assert answer.status_code == 400 and "explode" in answer.json()["error"]["message"]


# --- test controls -------------------------------------------------------------------------------


def test_calls_log_never_holds_the_token(standin, token):
    srv, base, path = standin
    rid = uuid.uuid4().hex
    generate(base, token, "logged", request_id=rid)
    generate(base, "ya29.made-up", "logged", request_id=rid)
    log = requests.get(f"{base}/_vertex/calls", timeout=5)
    assert token not in log.text and "made-up" not in log.text
    mine = [c for c in log.json()["calls"] if c["request_id"] == rid]
    assert [(c["model"], c["method"], c["project"], c["location"], c["authorized"]) for c in mine] == [
        ("gemini-test", "generateContent", "standin-project", "us-central1", True),
        ("gemini-test", "generateContent", "standin-project", "us-central1", False),
    ]
    assert mine[0]["path"] == f"{MODEL_URL}:generateContent"


def test_unknown_paths_and_methods(standin):
    srv, base, path = standin
    missing = requests.get(f"{base}/v1/nothing", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    wrong = requests.get(f"{base}/token", timeout=5)
    assert wrong.status_code == 405
