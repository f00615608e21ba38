"""Fallback models (api.fallback) through the real gateway: gunicorn, RQ workers, Redis and the sandbox
provider. A model whose one deployment is down (nothing listens on its port) or answers 500s hands the
request back and its fallback serves it: 200, the requested model's name in the body, the fallback named
in x-aigw-served-by and the access record; across wire formats (an OpenAI client on an Anthropic model,
an Anthropic client on an OpenAI one). The fallback's routes and limits are the caller's: a fallback the
caller may not use is skipped without a word about it, one whose limit is spent serves no more. A stream
falls back only before its first chunk; a provider's context-length 400 moves the request to the model's
context_window_fallback; the whole request keeps its one deadline; a Responses API answer a fallback produced
continues there."""

from __future__ import annotations

import json
import time

import pytest
import requests

from sandbox.gitlab import DAVE_TOKEN, ERIN_TOKEN
from tests.harness import Stack, wait_for, with_credential
from tools.embedded_redis import free_port

CONFIG = """
models:
  - name: down-gpt              # its one deployment: a port nothing listens on
    type: openai
    base_url: "http://127.0.0.1:{closed}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: gpt-down
    timeout: 8s
    retries: {attempts: 1}
    workers: 1
    breaker: {failures: 2, window: 1m, cool_down: 5m}   # out after two failed calls, for the module
    fallbacks: [claude-backup]
  - name: down-claude
    type: anthropic
    base_url: "http://127.0.0.1:{closed}"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: claude-down
    timeout: 8s
    retries: {attempts: 1}
    workers: 1
    fallbacks: [gpt-backup]
  - name: flaky                 # the sandbox; a directive makes it answer 500
    type: openai
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: gpt-flaky
    timeout: 5s
    retries: {attempts: 1}
    workers: 1
    fallbacks: [gpt-backup]
  - name: small                 # an 8-token context window (the sandbox's -ctx8)
    type: openai
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: small-ctx8
    timeout: 8s
    workers: 1
    context_window_fallback: gpt-backup
  - name: claude-backup
    type: anthropic
    base_url: "{sandbox}"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: claude-backup-upstream
    timeout: 8s
    workers: 1
  - name: gpt-backup
    type: openai
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: gpt-backup-upstream
    timeout: 8s
    workers: 1
routes:
  - name: erin-backup           # erin (6) may use claude-backup twice a minute
    match: {gitlab_user_id: "6", model_name: [claude-backup]}
    rate_limit: {requests_per_minute: 2}
  - name: alice-backups         # alice (2, the demo user) may use both backups; dave (5) neither
    match: {gitlab_user_id: "2", model_name: [claude-backup, gpt-backup]}
  - name: everyone
    match: {model_name: [down-gpt, down-claude, flaky, small]}
jobs:
  result_ttl: 30s
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    config = CONFIG.replace("{closed}", str(free_port()))  # bound and released: nothing listens there
    with Stack(tmp_path_factory.mktemp("fallbacks"), config, web_workers=1, web_threads=16) as gateway:
        yield gateway


def upstream_calls(stack: Stack, request_id: str) -> list[tuple[str, str]]:
    """(path, upstream model id) of every call the sandbox received for the request."""
    return [(entry["path"], (entry.get("body") or {}).get("model")) for entry in stack.sandbox_log()
            if entry.get("key") == request_id]


def chat(stack: Stack, model: str, content: str, request_id: str, *, token: str | None = None, **extra):
    headers = {"X-Request-Id": request_id}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return stack.chat(model, content, headers=headers, **extra)


def test_every_deployment_down_the_fallback_serves_under_the_requested_name(stack):
    answer = chat(stack, "down-gpt", "hello from openai", "fb-down-1")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "down-gpt"  # the name the client asked for, whoever served
    assert body["choices"][0]["message"]["content"] == "Sandbox reply: hello from openai"
    assert answer.headers["x-aigw-served-by"].startswith("claude-backup/")
    # An OpenAI-format request, translated for the Anthropic fallback.
    assert upstream_calls(stack, "fb-down-1") == [("/v1/messages", "claude-backup-upstream")]
    record = stack.access_record("fb-down-1")
    assert record["status"] == 200 and record["model"] == "down-gpt" and record["destination"] == "claude-backup"
    assert record["fallback_from"] == "down-gpt"
    assert record["fallback_reason"] in ("deployments_unavailable", "upstream_error")


def worker_jobs(stack: Stack, request_id: str) -> list[str]:
    """The models whose workers ran a job of the request (their "job done" records)."""
    records = [json.loads(line) for line in stack.workers.log().splitlines() if line.startswith("{")]
    return [r["model"] for r in records if r.get("message") == "job done" and r.get("request_id") == request_id]


def test_open_breakers_send_the_request_straight_to_the_fallback(stack):
    """Once down-gpt's breaker is open (two failed calls; an API process reads it at most once a
    second), no job is queued for it: the fallback's is the request's only job."""
    attempt = iter(range(100))

    def went_straight():
        request_id = f"fb-breaker-{next(attempt)}"
        answer = chat(stack, "down-gpt", "straight", request_id)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-aigw-served-by"].startswith("claude-backup/")
        return request_id if stack.access_record(request_id).get("breakers_open") else None

    request_id = wait_for(went_straight, timeout=30, interval=0.3, message="a request sent straight on")
    record = stack.access_record(request_id)
    assert record["fallback_from"] == "down-gpt" and record["fallback_reason"] == "deployments_unavailable"
    assert wait_for(lambda: worker_jobs(stack, request_id) or None, timeout=10,
                    message="the job record") == ["claude-backup"]
    assert upstream_calls(stack, request_id) == [("/v1/messages", "claude-backup-upstream")]


def test_an_anthropic_client_falls_back_to_an_openai_model(stack):
    body = {"model": "down-claude", "max_tokens": 50, "messages": [{"role": "user", "content": "hello anthropic"}]}
    answer = requests.post(f"{stack.url}/v1/messages", json=body, timeout=30,
                           headers=with_credential({"X-Request-Id": "fb-wire-1", "anthropic-version": "2023-06-01"}))
    assert answer.status_code == 200, answer.text
    message = answer.json()
    assert message["type"] == "message" and message["model"] == "down-claude"
    assert message["content"][0]["text"] == "Sandbox reply: hello anthropic"
    assert answer.headers["x-aigw-served-by"].startswith("gpt-backup/")
    assert upstream_calls(stack, "fb-wire-1") == [("/v1/chat/completions", "gpt-backup-upstream")]


def test_a_provider_answering_500s_hands_the_request_to_the_fallback(stack):
    # times=1: the 500 only for the request's first call (the sandbox counts calls by X-Request-Id).
    answer = chat(stack, "flaky", "[[sandbox fail=500 times=1]] try again", "fb-500-1")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "flaky" and answer.headers["x-aigw-served-by"].startswith("gpt-backup/")
    assert upstream_calls(stack, "fb-500-1") == [("/v1/chat/completions", "gpt-flaky"),
                                                 ("/v1/chat/completions", "gpt-backup-upstream")]


def test_a_fallback_the_caller_may_not_use_is_skipped_and_never_named(stack):
    answer = chat(stack, "down-gpt", "dave asks", "fb-route-1", token=DAVE_TOKEN)
    assert answer.status_code in (502, 503), answer.text  # down-gpt's own error
    assert "backup" not in answer.text and not any("backup" in value for value in answer.headers.values())
    assert "x-aigw-served-by" not in answer.headers
    assert upstream_calls(stack, "fb-route-1") == []
    record = stack.access_record("fb-route-1")
    assert record["destination"] == "down-gpt" and record["fallbacks_skipped"] == ["claude-backup:no_route"]


def test_the_fallback_s_rate_limits_apply(stack):
    served = [chat(stack, "down-gpt", f"erin {n}", f"fb-limit-{n}", token=ERIN_TOKEN) for n in range(3)]
    assert [answer.status_code for answer in served[:2]] == [200, 200], served[1].text
    refused = served[2]
    assert refused.status_code in (502, 503), refused.text  # down-gpt's own error: no fallback admitted it
    assert upstream_calls(stack, "fb-limit-2") == []
    assert stack.access_record("fb-limit-2")["fallbacks_skipped"] == ["claude-backup:rate_limited"]


def test_a_stream_falls_back_before_its_first_chunk(stack):
    answer = chat(stack, "down-gpt", "stream me", "fb-stream-1", stream=True)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert answer.headers["x-aigw-served-by"].startswith("claude-backup/")
    events = [json.loads(line[6:]) for line in answer.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert answer.text.rstrip().endswith("data: [DONE]")
    assert {event["model"] for event in events} == {"down-gpt"}
    text = "".join(event["choices"][0]["delta"].get("content") or "" for event in events if event["choices"])
    assert text == "Sandbox reply: stream me"


@pytest.mark.parametrize("fault", ["fail_after=2", "error_after=2"])
def test_a_stream_failing_after_its_first_chunk_does_not_fall_back(stack, fault):
    request_id = f"fb-midstream-{fault.split('=')[0]}"
    answer = chat(stack, "flaky", f"[[sandbox {fault}]] one two three four five six", request_id, stream=True)
    assert answer.status_code == 200
    lines = [line for line in answer.text.splitlines() if line.startswith("data: ")]
    assert "Sandbox" in lines[0] or "delta" in lines[0]  # the first chunk reached the client...
    assert "error" in lines[-1] and "data: [DONE]" not in lines  # ...and the stream ends with an error event
    assert "gpt-backup" not in answer.text
    # One call: the failure after the first chunk is neither retried nor handed to the fallback.
    assert upstream_calls(stack, request_id) == [("/v1/chat/completions", "gpt-flaky")]
    record = stack.access_record(request_id)
    assert record["stream_outcome"] == "failed" and "fallback_from" not in record


def test_a_context_length_error_moves_the_request_to_the_larger_model(stack):
    fits = chat(stack, "small", "short prompt", "fb-ctx-fits")
    assert fits.status_code == 200 and fits.headers["x-aigw-served-by"].startswith("small/")
    long_prompt = " ".join(f"word{n}" for n in range(20))  # 20 tokens: over small's 8
    answer = chat(stack, "small", long_prompt, "fb-ctx-1")
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "small" and answer.headers["x-aigw-served-by"].startswith("gpt-backup/")
    assert upstream_calls(stack, "fb-ctx-1") == [("/v1/chat/completions", "small-ctx8"),
                                                 ("/v1/chat/completions", "gpt-backup-upstream")]
    assert stack.access_record("fb-ctx-1")["fallback_reason"] == "context_length_exceeded"


def test_the_fallback_keeps_the_request_s_one_deadline(stack):
    # flaky (timeout 5 s) answers its 500 after 3 s; the fallback would answer after 3 s more, within its
    # own 8 s but past the request's deadline: the client hears 504 at flaky's 5 s. A fresh deadline for
    # the fallback would have given 200 at 6 s; a fresh 5 s from the hand-over, 504 at 8 s.
    started = time.monotonic()
    answer = chat(stack, "flaky", "[[sandbox fail=500 times=1 delay_ms=3000]] slow", "fb-deadline-1", timeout=30)
    took = time.monotonic() - started
    assert answer.status_code == 504, answer.text
    assert 4.5 <= took < 7.5, took
    assert [model for _, model in upstream_calls(stack, "fb-deadline-1")] == ["gpt-flaky", "gpt-backup-upstream"]


def test_a_response_a_fallback_produced_continues_on_that_fallback(stack):
    """flaky's provider fails once; gpt-backup answers, and its provider keeps the response. Continuing it
    under the name asked for (flaky) goes to gpt-backup, which holds it, as do GET and DELETE of it. Every
    model here shares one sandbox, which would find the response whichever model asked: the upstream model
    id shows where the continuation went."""
    first = requests.post(f"{stack.url}/v1/responses", timeout=30,
                          json={"model": "flaky", "input": "[[sandbox fail=500 times=1]] remember blue"},
                          headers=with_credential({"X-Request-Id": "fb-resp-1"}))
    assert first.status_code == 200, first.text
    assert first.json()["model"] == "flaky" and first.headers["x-aigw-served-by"].startswith("gpt-backup/")
    previous = first.json()["id"]
    then = requests.post(f"{stack.url}/v1/responses", timeout=30,
                         json={"model": "flaky", "input": "and then?", "previous_response_id": previous},
                         headers=with_credential({"X-Request-Id": "fb-resp-2"}))
    assert then.status_code == 200, then.text
    assert then.json()["model"] == "flaky" and then.headers["x-aigw-served-by"].startswith("gpt-backup/")
    assert upstream_calls(stack, "fb-resp-2") == [("/v1/responses", "gpt-backup-upstream")]
    record = stack.access_record("fb-resp-2")
    assert record["continued_on"] == "gpt-backup" and "fallback_from" not in record
    got = requests.get(f"{stack.url}/v1/responses/{previous}", headers=with_credential({}), timeout=30)
    assert got.status_code == 200, got.text
    assert got.json()["id"] == previous and got.json()["model"] == "flaky"
