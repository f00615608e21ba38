"""The request path end to end: API -> Redis queue -> RQ worker -> provider and back."""

from __future__ import annotations

import re
import threading
import time
import zlib

import anthropic  # noqa: F401  (the Anthropic SDK is exercised once /v1/messages exists)
import openai
import pytest
import requests

from sandbox.gitlab import DEMO_TOKEN
from tests.harness import PROVIDER_KEY, wait_for, with_credential


def test_health_needs_nothing_and_ready_shows_models_to_an_administrator_only(stack):
    assert requests.get(f"{stack.url}/health", timeout=5).json() == {"status": "ok"}
    # A probe (no credential), a user, a token GitLab refuses: the status and Redis's, nothing more.
    for headers in ({}, {"Authorization": f"Bearer {DEMO_TOKEN}"}, {"Authorization": "Bearer glpat-not-a-token"}):
        ready = requests.get(f"{stack.url}/ready", headers=headers, timeout=5)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "redis": {"ok": True}}, headers
    ready = stack.ready()  # a GitLab administrator's token
    assert ready.status_code == 200
    body = ready.json()
    assert body["redis"]["ok"] is True and body["gitlab"] == {"reachable": True}
    assert body["models"]["chat"]["workers"] == 2
    assert body["models"]["later"] == {"workers": 0, "queued": 0}


def test_chat_completion_round_trip(stack):
    response = stack.chat("chat", "hello gateway")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "chat"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Sandbox reply: hello gateway",
                                             "refusal": None}
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    request_id = response.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    # The provider saw the gateway's key (never the caller's) and the request id.
    seen = [entry for entry in stack.sandbox_log() if entry["key"] == request_id]
    assert len(seen) == 1
    assert seen[0]["headers"]["authorization"] == f"<redacted len={len('Bearer ' + PROVIDER_KEY)}>"
    assert seen[0]["headers"]["x-request-id"] == request_id


def test_callers_request_id_is_kept_when_sane(stack):
    kept = stack.chat("chat", "id please", headers={"X-Request-Id": "client-abc.123"})
    assert kept.headers["X-Request-Id"] == "client-abc.123"
    replaced = stack.chat("chat", "id please", headers={"X-Request-Id": "bad id\twith spaces"})
    assert replaced.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-Id"])
    errored = requests.post(f"{stack.url}/v1/chat/completions", data=b"{", timeout=5,
                            headers=with_credential({"Content-Type": "application/json", "X-Request-Id": "err-1"}))
    assert errored.headers["X-Request-Id"] == "err-1"


def test_anthropic_model_behind_openai_format(stack):
    response = stack.chat("claude", "one two three four five", max_tokens=3,
                          messages=[{"role": "system", "content": "be brief"},
                                    {"role": "user", "content": "one two three four five"}])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "claude"
    assert body["choices"][0]["message"]["content"] == "Sandbox reply: one"
    assert body["choices"][0]["finish_reason"] == "length"
    # system (2 words) + user (5 words); the sandbox counts words as tokens
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    stopped = stack.chat("claude", "alpha beta gamma", stop=["beta"])
    assert stopped.json()["choices"][0]["finish_reason"] == "stop"
    assert stopped.json()["choices"][0]["message"]["content"].rstrip() == "Sandbox reply: alpha"


def test_anthropic_refuses_what_it_cannot_express(stack):
    response = stack.chat("claude", "hi", temperature=1.5)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "temperature"
    assert error["code"] == "unsupported_parameter"


def test_openai_sdk_works_unchanged(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=DEMO_TOKEN, max_retries=0)
    completion = client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "from the sdk"}])
    assert completion.choices[0].message.content == "Sandbox reply: from the sdk"
    assert completion.model == "gpt"
    ids = {model.id for model in client.models.list()}
    assert {"chat", "gpt", "claude", "solo", "later"} <= ids
    assert client.models.retrieve("claude").id == "claude"
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt", messages=[])
    assert bad.value.body["param"] == "messages"


@pytest.mark.parametrize(
    ("data", "code", "param"),
    [
        (b'{"model": "chat", "messages": [', "invalid_json", None),
        (b"", "invalid_request", None),
        (b"[1, 2]", "invalid_request", None),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "invalid_request", "model"),
        (b'{"model": "chat"}', "invalid_request", "messages"),
        (b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
         "invalid_request", "max_tokens"),
    ],
)
def test_malformed_requests_are_400(stack, data, code, param):
    response = requests.post(f"{stack.url}/v1/chat/completions", data=data, timeout=5,
                             headers=with_credential({"Content-Type": "application/json"}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert "Traceback" not in response.text


def test_unknown_model_is_404(stack):
    response = stack.chat("gpt-5-nonexistent", "x")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


def test_unknown_path_and_method(stack):
    missing = requests.get(f"{stack.url}/v1/nothing-here", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = requests.delete(f"{stack.url}/v1/chat/completions", timeout=5, headers=with_credential({}))
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_wrong_content_type_is_415(stack):
    response = requests.post(f"{stack.url}/v1/chat/completions", data="hello", timeout=5,
                             headers=with_credential({"Content-Type": "text/plain"}))
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_body_over_limit_is_413(stack):
    big = "x" * 70_000  # MAX_BODY_BYTES is 65536 for this stack
    response = stack.chat("chat", big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    def chunks():
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}]}'

    chunked = requests.post(f"{stack.url}/v1/chat/completions", data=chunks(), timeout=10,
                            headers=with_credential({"Content-Type": "application/json"}))
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == "payload_too_large"


def test_retries_upstream_500_then_succeeds(stack):
    response = stack.chat("chat", "[[sandbox fail=500 times=2]] retry me", headers={"X-Request-Id": "r500"})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Sandbox reply: retry me"
    assert stack.sandbox_calls("r500") == 3


def test_honours_retry_after(stack):
    response = stack.chat("gpt", "[[sandbox fail=429 times=1 retry_after=1]] patience",
                          headers={"X-Request-Id": "r429"})
    assert response.status_code == 200, response.text
    times = sorted(entry["time"] for entry in stack.sandbox_log() if entry["key"] == "r429")
    assert len(times) == 2
    assert times[1] - times[0] >= 0.95


def test_retries_exhausted_is_502_not_to_be_retried(stack):
    response = stack.chat("chat", "[[sandbox fail=503]] never", headers={"X-Request-Id": "r503"})
    assert response.status_code == 502
    assert response.headers["x-should-retry"] == "false"
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert "3 attempts" in error["message"]
    assert stack.sandbox_calls("r503") == 3


def test_upstream_429_after_retries_is_passed_on(stack):
    response = stack.chat("chat", "[[sandbox fail=429 retry_after=0]] busy",
                          headers={"X-Request-Id": "r429x"})
    assert response.status_code == 429
    assert response.headers["x-should-retry"] == "false"
    assert response.json()["error"]["code"] == "upstream_rate_limited"
    assert stack.sandbox_calls("r429x") == 3


def test_connection_drop_is_retried(stack):
    response = stack.chat("chat", "[[sandbox close times=1]] again", headers={"X-Request-Id": "rclose"})
    assert response.status_code == 200, response.text
    assert stack.sandbox_calls("rclose") == 2


@pytest.mark.parametrize("status", [400, 413, 422])
def test_request_errors_from_upstream_pass_through_unretried(stack, status):
    key = f"pass{status}"
    response = stack.chat("chat", f"[[sandbox fail={status}]] bad", headers={"X-Request-Id": key})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == "upstream_invalid_request"
    assert error["message"] == f"sandbox injected {status}"
    assert stack.sandbox_calls(key) == 1


def test_upstream_refusing_the_gateways_key_is_502(stack):
    response = stack.chat("wrong-key", "hello", headers={"X-Request-Id": "wrongkey"})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "upstream_auth_error"
    assert "gateway configuration" in error["message"]
    assert "sk-not-the-right-key" not in response.text
    assert stack.sandbox_calls("wrongkey") == 1


def test_upstream_404_is_502_model_misconfigured(stack):
    response = stack.chat("chat", "[[sandbox fail=404]] where", headers={"X-Request-Id": "r404"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_model_not_found"


def test_upstream_hang_is_504_at_the_deadline_and_frees_the_worker(stack):
    started = time.monotonic()
    response = stack.chat("solo", "[[sandbox hang]] hello?", headers={"X-Request-Id": "hang1"})
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "deadline_exceeded"
    assert 1.9 <= elapsed < 5.0  # the model's timeout is 2s
    # The worker gave up on the provider at the deadline and closed the connection...
    hangs = wait_for(lambda: [h for h in requests.get(f"{stack.sandbox_url}/_sandbox/hangs", timeout=5).json()
                              if h["key"] == "hang1" and h["ended"]], timeout=5, message="the hang to end")
    assert hangs[0]["reason"] == "client_closed"
    # ...and takes the next job at once.
    after = stack.chat("solo", "are you free", timeout=10)
    assert after.status_code == 200, after.text


def test_no_live_worker_is_503_at_once(stack):
    started = time.monotonic()
    response = stack.chat("later", "anyone?")
    assert response.status_code == 503
    assert time.monotonic() - started < 1.0  # not the model's 2s deadline
    assert response.headers["Retry-After"]
    error = response.json()["error"]
    assert error["code"] == "no_workers"
    assert "'later'" in error["message"]


def test_full_queue_is_503_with_retry_after(stack):
    results = {}

    def send(name):
        results[name] = stack.chat("solo", f"[[sandbox hang]] {name}", headers={"X-Request-Id": name})

    running = threading.Thread(target=send, args=("full-running",))
    running.start()
    wait_for(lambda: stack.sandbox_calls("full-running"), timeout=5, message="the first job to start")
    queued = threading.Thread(target=send, args=("full-queued",))
    queued.start()
    wait_for(lambda: stack.redis().llen("rq:queue:solo") == 1, timeout=5, message="a queued job")
    refused = stack.chat("solo", "no room")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["Retry-After"]) >= 1
    running.join(10)
    queued.join(10)
    assert results["full-running"].status_code == 504


def redis_dump(client) -> bytes:
    """Every value in Redis as bytes; job data as written (plain JSON), but expanded if
    anything stored it zlib-compressed, as RQ itself does."""
    parts = []
    for key in client.scan_iter("*"):
        kind = client.type(key)
        if kind == b"hash":
            for name, value in client.hgetall(key).items():
                if name == b"data" and not value.startswith(b"["):
                    value = zlib.decompress(value)
                parts += [name, value]
        elif kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"stream":
            parts += [v for _, fields in client.xrange(key) for pair in fields.items() for v in pair]
        elif kind == b"list":
            parts += client.lrange(key, 0, -1)
        elif kind in (b"set", b"zset"):
            parts += list(client.smembers(key) if kind == b"set" else client.zrange(key, 0, -1))
    return b"\n".join(parts)


def test_data_at_rest_holds_no_credentials_and_expires(stack):
    token = DEMO_TOKEN
    response = stack.chat("chat", "secret check", headers={"Authorization": f"Bearer {token}",
                                                         "X-Request-Id": "rest-1"})
    assert response.status_code == 200
    failed = stack.chat("chat", "[[sandbox fail=503]] fail", headers={"X-Request-Id": "rest-2"})
    assert failed.status_code == 502
    client = stack.redis()
    dump = redis_dump(client)
    job_ttls = [client.ttl(key) for key in client.scan_iter("rq:job:*")]
    ours = [key.decode().split(":", 2)[2] for key in client.scan_iter("rq:job:*")
            if client.type(key) == b"hash" and b"request_id=rest-" in (client.hget(key, "description") or b"")]
    assert token.encode() not in dump
    assert PROVIDER_KEY.encode() not in dump
    # A job that answered leaves no record (its answer went through the reply stream); a
    # failed one stays in RQ's failed registry, so the scan did see a job's own data.
    assert b"secret check" not in dump
    assert b"[[sandbox fail=503]] fail" in dump
    assert len(ours) == 1
    for job_id in ours:  # replies are deleted once read (in batches, a moment after)...
        wait_for(lambda job_id=job_id: not client.exists(f"aigw:reply:{job_id}"), timeout=5,
                 message="the read reply stream deleted")
    # ...and replies nobody read (requests that timed out) expire on their own.
    assert all(0 < client.ttl(key) <= 30 for key in client.scan_iter("aigw:reply:*"))
    assert job_ttls and all(0 < ttl <= 120 for ttl in job_ttls)  # result_ttl 30s, failure_ttl 2m
