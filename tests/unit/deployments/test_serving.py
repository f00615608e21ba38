"""Which deployment serves a call: by weight, within one retry policy and the deployments' quotas,
as each can express it; streams, and who served them (workers.deployments)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
import requests

from shared import breaker
from shared.config import parse_config
from shared.errors import DeploymentsUnavailable, InvalidRequest, UpstreamError, UpstreamRateLimited
from shared.jobs import JobRequest
from shared.keys import deployment_health_key
from shared.ratelimit import RateLimiter
from shared.replies import SERVED_BY
from tests.unit.deployments.helpers import calls, config, outage, request, serve
from workers.deployments import Deployments
from workers.runtime import Runtime


def test_calls_spread_by_weight(providers, client):
    gateway = config(providers, weights=(3, 1))
    runtime = Runtime(None, gateway)
    deployments = runtime.for_model("pool")
    deployments.rng.seed(7)
    served = {"pool/d0": 0, "pool/d1": 0}
    for _ in range(200):
        job = request()
        outcome = deployments.serve(job, lambda member, out, job=job: runtime._run(member, job, out), None, client,
                                    RateLimiter(client))
        served[outcome.served_by] += 1
    assert 0.65 <= served["pool/d0"] / 200 <= 0.85, served
    assert (calls(providers[0]), calls(providers[1])) == (served["pool/d0"], served["pool/d1"])


def test_one_retry_policy_spans_the_deployments(providers, client):
    """retries.attempts counts the calls to every deployment together; a move to a deployment not tried yet
    waits nothing, and only a return to one already tried waits, as long as its Retry-After asks."""
    gateway = config(providers, weights=(1, 1, 1), breaker_yaml={"failures": 10}, attempts=2)
    for url in providers:
        outage(url, 503)
    with pytest.raises(DeploymentsUnavailable, match="2 attempts"):
        serve(gateway, client, request())
    assert sum(calls(url) for url in providers) == 2  # two attempts in all, not two per deployment
    gateway = config(providers, breaker_yaml={"failures": 10}, attempts=3)  # d0 and d1
    client.delete(deployment_health_key("pool"))
    for url in providers:
        requests.post(f"{url}/_sandbox/reset", timeout=5).raise_for_status()  # the log and the outage
    for url in providers[:2]:
        outage(url, 503, retry_after=1, times=1)  # each fails its first call, asking for a second's wait
    started = time.monotonic()
    outcome, _ = serve(gateway, client, request())
    took = time.monotonic() - started
    assert outcome.attempts == 3 and outcome.retry_reasons == ["status_503", "status_503"]
    assert (calls(providers[0]), calls(providers[1])) in ((2, 1), (1, 2))
    assert 1.0 <= took < 1.9, took  # one wait of 1 s (the return), none for the move to the other


def test_a_deployment_quota_moves_calls_and_none_left_is_429(providers, client):
    gateway = parse_config({"models": [{"name": "pool", "deployments": [
        {"name": "d0", "type": "generic", "base_url": f"{providers[0]}/v1", "rate_limit": {"requests_per_minute": 2}},
        {"name": "d1", "type": "generic", "base_url": f"{providers[1]}/v1", "rate_limit": {"requests_per_minute": 1}},
    ]}], "routes": []}, {})
    served = [serve(gateway, client, request())[0].served_by for _ in range(3)]
    assert sorted(served) == ["pool/d0", "pool/d0", "pool/d1"]
    with pytest.raises(UpstreamRateLimited) as refused:
        serve(gateway, client, request())
    assert refused.value.retry_after is not None and 0 < refused.value.retry_after <= 60


def test_a_stream_says_who_serves_it_and_a_mid_stream_failure_is_not_retried(providers, client):
    gateway = config(providers, weights=(1, 1))
    chunks: list = []

    def emit(data, meta=None):
        chunks.append((data, meta))

    outcome, _ = serve(gateway, client, request("hi there", stream=True), emit)
    assert chunks[0][1][SERVED_BY] == outcome.served_by and all(meta is None for _, meta in chunks[1:])
    chunks.clear()
    total = calls(providers[0]) + calls(providers[1])
    with pytest.raises(UpstreamError):
        serve(gateway, client, request("[[sandbox fail_after=2]] one two three four five six", stream=True), emit)
    assert chunks and calls(providers[0]) + calls(providers[1]) == total + 1  # one call, never a second


class OverloadedOnceStarted(http.server.BaseHTTPRequestHandler):
    """A provider that accepts a stream (200) and then sends only its error event: OpenAI's
    service_unavailable_error / server_is_overloaded after a 200 (router-for-me/CLIProxyAPI#2712), as
    Anthropic's streams may carry an overloaded_error event (docs.anthropic.com, streaming, "Error events")."""

    calls = 0

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).calls += 1
        body = (b'data: {"error": {"message": "The server is overloaded.", "type": "service_unavailable_error", '
                b'"code": "server_is_overloaded"}}\n\n')
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_stream_that_fails_before_its_first_chunk_moves_to_another_deployment(providers, client):
    """Its first event is the provider's error: nothing reached the client, so the call moves on, as after
    a 5xx, and the client gets one whole answer from the other deployment."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OverloadedOnceStarted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gateway = parse_config({"models": [{"name": "pool", "breaker": {"failures": 10}, "deployments": [
            {"name": "busy", "type": "generic", "base_url": f"http://127.0.0.1:{server.server_port}/v1",
             "weight": 1000},
            {"name": "spare", "type": "generic", "base_url": f"{providers[0]}/v1"}]}], "routes": []}, {})
        for i in range(3):
            chunks: list = []
            outcome, _ = serve(gateway, client, request(f"one two {i}", stream=True),
                               lambda data, meta=None, chunks=chunks: chunks.append((data, meta)))
            assert outcome.served_by == "pool/spare" and chunks[0][1][SERVED_BY] == "pool/spare"
            text = b"".join(data for data, _ in chunks).decode()
            assert text.count('"role"') == 1 and "overloaded" not in text and text.rstrip().endswith("[DONE]")
        assert OverloadedOnceStarted.calls >= 2  # weight 1000 against 1: picked first nearly every time
        assert calls(providers[0]) == 3
        # With no other deployment left to try, the provider's error is the answer: it is not asked again.
        alone = parse_config({"models": [{"name": "pool", "deployments": [
            {"name": "busy", "type": "generic", "base_url": f"http://127.0.0.1:{server.server_port}/v1"}]}],
            "routes": []}, {})
        before = OverloadedOnceStarted.calls
        with pytest.raises(UpstreamError, match="overloaded"):
            serve(alone, client, request("alone", stream=True), lambda data, meta=None: None)
        assert OverloadedOnceStarted.calls == before + 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_request_only_some_deployments_can_express_goes_to_those(providers, client):
    gateway = parse_config({"models": [{"name": "pool", "deployments": [
        {"name": "claude", "type": "anthropic", "base_url": f"{providers[0]}/v1", "api_key": "k"},
        {"name": "llama", "type": "generic", "base_url": f"{providers[1]}/v1"},
    ]}], "routes": []}, {})
    job = request()
    # logprobs: OpenAI chat can carry it, a translation to Anthropic cannot.
    job = JobRequest(**{**job.to_dict(), "body": {**job.body, "logprobs": True}})
    for _ in range(5):
        assert serve(gateway, client, job)[0].served_by == "pool/llama"
    # None can: the request is refused (400) with the translation's own words, and no call is made.
    gateway = parse_config({"models": [{"name": "pool", "deployments": [
        {"name": f"claude{i}", "type": "anthropic", "base_url": f"{providers[i]}/v1", "api_key": "k"} for i in (0, 1)
    ]}], "routes": []}, {})
    def every_call() -> int:
        return sum(len(requests.get(f"{url}/_sandbox/log", timeout=5).json()["requests"]) for url in providers[:2])

    before = every_call()
    with pytest.raises(InvalidRequest) as refused:
        serve(gateway, client, job)
    assert refused.value.status == 400 and "logprobs" in refused.value.message
    assert every_call() == before


def test_the_short_form_keeps_its_own_retries_and_no_breaker(providers, client):
    gateway = parse_config({"models": [{"name": "pool", "type": "generic", "base_url": f"{providers[0]}/v1"}],
                            "routes": []}, {})
    deployments = Deployments(gateway.model("pool"))
    assert deployments.breaker is None and deployments.simple is deployments.members[0]
    assert not deployments.simple.client.single_attempt


def test_a_deployment_token_quota_counts_what_the_provider_reported(providers, client):
    gateway = parse_config({"models": [{"name": "pool", "deployments": [
        {"name": "d0", "type": "generic", "base_url": f"{providers[0]}/v1", "rate_limit": {"tokens_per_minute": 5000}},
    ]}], "routes": []}, {})
    job = request()
    job = JobRequest(**{**job.to_dict(), "body": {**job.body, "max_tokens": 2000}})  # each reserves about 2,000
    for _ in range(4):  # the estimates alone would be spent at the third; the usage reported is a few dozen
        assert serve(gateway, client, job)[0].served_by == "pool/d0"


@pytest.mark.parametrize("kind", ["generic", "anthropic"])
def test_a_prompt_too_long_for_the_provider_is_context_length_exceeded(providers, client, kind):
    """The sandbox refuses a prompt over an "-ctx<N>" model's window with the provider's own error (OpenAI's
    code context_length_exceeded, Anthropic's "prompt is too long"); that is the request's, no deployment's."""
    from shared.errors import ContextLengthExceeded

    gateway = parse_config({"models": [{"name": "pool", "deployments": [
        {"name": "d0", "type": kind, "base_url": f"{providers[0]}/v1", "model": "small-ctx8", "api_key": "k"},
    ]}], "routes": []}, {})
    with pytest.raises(ContextLengthExceeded) as refused:
        serve(gateway, client, request("far too many words for a window of eight tokens, " * 4))
    assert (refused.value.status, refused.value.code) == (400, "context_length_exceeded")
    assert calls(providers[0]) == (1 if kind == "generic" else 0)  # one call: not retried
    assert breaker.read_states(client, gateway.model("pool"))["d0"].state == breaker.HEALTHY


def test_the_sandbox_outage_answers_every_call_until_lifted(providers):
    url = providers[2]
    outage(url, 503, retry_after=7, times=2)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    answers = [requests.post(f"{url}/v1/chat/completions", json=body, timeout=5) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["Retry-After"] == "7" and answers[0].json()["error"]["code"] == "sandbox_outage"
    outage(url, 500)
    assert requests.post(f"{url}/v1/chat/completions", json=body, timeout=5).status_code == 500
    outage(url, None)
    assert requests.post(f"{url}/v1/chat/completions", json=body, timeout=5).status_code == 200
