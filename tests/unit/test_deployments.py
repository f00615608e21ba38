"""A model's deployments in a worker (workers.deployments) and the shared breaker (shared.breaker), against
an embedded Redis and sandbox provider instances in threads: no mocks. The processes' view (several worker
processes, the API's /ready and headers) is tests/integration/test_deployments.py's."""

from __future__ import annotations

import http.server
import threading
import time

import pytest
import requests

from api.identity import Identity
from sandbox.provider import serve_in_thread
from shared import breaker
from shared.config import parse_config
from shared.errors import DeploymentsUnavailable, InvalidRequest, UpstreamError, UpstreamRateLimited
from shared.jobs import CHAT_COMPLETIONS, JobRequest
from shared.keys import deployment_failures_key, deployment_health_key, deployment_probe_key
from shared.ratelimit import RateLimiter
from shared.replies import SERVED_BY
from workers import breaker as worker_breaker
from workers.deployments import Deployments
from workers.runtime import Runtime


@pytest.fixture(scope="module")
def providers():
    started = [serve_in_thread() for _ in range(3)]
    yield [url for _, url in started]
    for server, _ in started:
        server.stop()


@pytest.fixture(autouse=True)
def fresh(providers):
    for url in providers:
        requests.post(f"{url}/_sandbox/reset", timeout=5).raise_for_status()


def outage(url: str, status: int | None, **extra) -> None:
    requests.post(f"{url}/_sandbox/outage", json={"status": status, **extra}, timeout=5).raise_for_status()


def calls(url: str) -> int:
    log = requests.get(f"{url}/_sandbox/log", params={"path": "/v1/chat/completions"}, timeout=5).json()
    return len(log["requests"])


def config(providers, *, weights=(1, 1), breaker_yaml=None, extra: dict | None = None, attempts: int = 3):
    deployments = [{"name": f"d{i}", "type": "generic", "base_url": f"{url}/v1", "model": "sandbox-model",
                    "weight": weight} for i, (url, weight) in enumerate(zip(providers, weights, strict=False))]
    model = {"name": "pool", "deployments": deployments, "timeout": "10s", "retries": {"attempts": attempts},
             "breaker": breaker_yaml or {"failures": 2, "window": "30s", "cool_down": "1s"}, **(extra or {})}
    return parse_config({"models": [model], "routes": []}, {})


def request(content: str = "hello", *, stream: bool = False, seconds: float = 10.0, user: str | None = None
            ) -> JobRequest:
    return JobRequest(job_id=f"job{time.monotonic_ns()}", request_id="req-1", model="pool", requested_model="pool",
                      endpoint=CHAT_COMPLETIONS, body={"model": "pool", "stream": stream,
                                                       "messages": [{"role": "user", "content": content}]},
                      deadline=time.time() + seconds, stream=stream, stream_seconds=30.0,
                      caller={"user_id": user, "username": None, "project_id": None} if user else {})


def serve(gateway, client, job: JobRequest, emit=None, *, seed: int | None = None):
    runtime = Runtime(gateway.settings if hasattr(gateway, "settings") else None, gateway)
    deployments = runtime.for_model("pool")
    if seed is not None:
        deployments.rng.seed(seed)
    return deployments.serve(job, lambda member, out: runtime._run(member, job, out), emit, client,
                             RateLimiter(client)), deployments


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


def test_a_failing_deployment_moves_the_call_and_then_cools_down(providers, client):
    gateway = config(providers)
    outage(providers[1], 500)
    runtime = Runtime(None, gateway)
    deployments = runtime.for_model("pool")
    served = set()
    for i in range(12):
        job = request(user=str(i % 2 + 1))  # two users: one alone could not open it (breaker.min_callers)
        outcome = deployments.serve(job, lambda member, out, job=job: runtime._run(member, job, out), None, client,
                                    RateLimiter(client))
        served.add(outcome.served_by)
    assert served == {"pool/d0"}
    # Failures within the window, of two users, opened the breaker; after that d1 gets no call.
    opened_after = calls(providers[1])
    assert opened_after >= 2
    states = breaker.read_states(client, gateway.model("pool"))
    assert states["d1"].state == breaker.COOLING and states["d0"].state == breaker.HEALTHY
    for i in range(6):
        job = request(user=str(i % 2 + 1))
        deployments.serve(job, lambda member, out, job=job: runtime._run(member, job, out), None, client,
                          RateLimiter(client))
    assert calls(providers[1]) == opened_after


def cooled_by_two_callers(client, model, *, status: int) -> worker_breaker.Breaker:
    """Deployment d1 cooled down by ``status`` failures of two callers (breaker.min_callers);
    the worker's breaker that saw them."""
    seen = worker_breaker.Breaker(model)
    seen.states(client)
    for user in ("user_id:1", "user_id:2"):
        seen.failed(client, "d1", status=status, retry_after=None, probe=False, caller=user)
    return seen


def test_after_the_cool_down_one_probe_decides(providers, client):
    gateway = config(providers)
    model = gateway.model("pool")
    cooled_by_two_callers(client, model, status=503)
    assert breaker.read_states(client, model)["d1"].state == breaker.COOLING
    # A second worker takes the probe once the cool-down ends; a third is refused it meanwhile.
    time.sleep(1.05)
    second, third = worker_breaker.Breaker(model), worker_breaker.Breaker(model)
    second.states(client), third.states(client)
    assert second.try_probe(client, "d1") and not third.try_probe(client, "d1")
    # The probe could not connect (no prompt causes that): cooling again at once.
    second.failed(client, "d1", status=None, retry_after=None, probe=True, reason="connect")
    state = breaker.read_states(client, model)["d1"]
    assert state.state == breaker.COOLING and state.until > time.time() + 0.5
    assert not third.try_probe(client, "d1")  # its view is of the earlier cool-down: probed already
    time.sleep(1.05)
    third.stale()
    third.states(client)
    assert third.try_probe(client, "d1")
    third.states(client)
    third.succeeded(client, "d1", probe=True)
    assert breaker.read_states(client, model)["d1"].state == breaker.HEALTHY
    assert not client.exists(deployment_failures_key("pool", "d1"))
    assert client.exists(deployment_probe_key("pool", "d1", state.until))  # expires with the model's timeout


def test_one_users_failing_prompts_never_take_the_deployments_out_for_another(providers, client):
    """A prompt the provider answers 500 (vLLM does to some inputs) is what the sandbox's directive
    provokes on every deployment: one user sending only those opens no breaker, so another user is
    served throughout; a second user's failures within the window do open it (breaker.min_callers)."""
    gateway = config(providers)  # failures: 2, window 30s
    model = gateway.model("pool")
    for _ in range(6):
        with pytest.raises(DeploymentsUnavailable):
            serve(gateway, client, request("[[sandbox fail=500]] break it", user="1"))
        assert all(s.state == breaker.HEALTHY for s in breaker.read_states(client, model).values())
        outcome, _ = serve(gateway, client, request("hello", user="2"))
        assert outcome.served_by in ("pool/d0", "pool/d1")
    with pytest.raises(DeploymentsUnavailable):
        serve(gateway, client, request("[[sandbox fail=500]] break it too", user="2"))
    assert all(s.state == breaker.COOLING for s in breaker.read_states(client, model).values())


def test_a_probe_one_caller_fails_goes_to_the_next_call(providers, client):
    """A probe that failed the way a prompt may make it fail releases the probe: the next call, of another
    user, probes and its answer makes the deployment healthy; a probe failing for two users cools it again."""
    gateway = config(providers)
    model = gateway.model("pool")
    one = cooled_by_two_callers(client, model, status=500)
    time.sleep(1.05)
    one.stale()
    one.states(client)
    assert one.try_probe(client, "d1")
    assert one.failed(client, "d1", status=500, retry_after=None, probe=True, caller="user_id:1") is None
    state = breaker.read_states(client, model)["d1"]
    assert state.state == breaker.COOLING and state.until <= time.time()  # still due: not cooled again
    other = worker_breaker.Breaker(model)
    other.states(client)
    assert other.try_probe(client, "d1")  # released: another worker's call probes
    assert other.failed(client, "d1", status=None, retry_after=None, probe=True, caller="user_id:1",
                        reason="upstream_error") is None  # the same user again: still not enough
    assert other.try_probe(client, "d1")
    assert other.failed(client, "d1", status=502, retry_after=None, probe=True, caller="user_id:2") == breaker.COOLING
    assert breaker.read_states(client, model)["d1"].until > time.time() + 0.5
    # Through the workers: the failing user's probe moves its call on; the next user's probe heals d1.
    time.sleep(1.05)
    with pytest.raises(DeploymentsUnavailable):
        serve(gateway, client, request("[[sandbox fail=500]] again", user="1"))
    assert breaker.read_states(client, model)["d1"].state == breaker.COOLING
    outcome, _ = serve(gateway, client, request("hello", user="2"))
    assert outcome.served_by == "pool/d1"  # the due probe goes first
    assert breaker.read_states(client, model)["d1"].state == breaker.HEALTHY


def test_failures_no_prompt_causes_count_whoever_met_them(providers, client):
    gateway = config(providers)
    model = gateway.model("pool")
    one = worker_breaker.Breaker(model)
    one.states(client)
    assert one.failed(client, "d1", status=None, retry_after=None, probe=False, caller="user_id:1",
                      reason="connect") is None
    # A read timeout a prompt can cause (a long answer, not streamed): one caller's alone open nothing.
    for _ in range(4):
        assert one.failed(client, "d2", status=None, retry_after=None, probe=False, caller="user_id:1",
                          reason="read_timeout") is None
    assert one.failed(client, "d2", status=None, retry_after=None, probe=False, caller="user_id:2",
                      reason="read_timeout") == breaker.COOLING  # a second caller's: they count
    assert one.failed(client, "d1", status=None, retry_after=None, probe=False, caller="user_id:1",
                      reason="connect") == breaker.COOLING  # the same caller's second refused connection
    assert worker_breaker.caller_of({"user_id": "7", "project_id": "3"}) == "user_id:7"
    assert worker_breaker.caller_of({"user_id": None, "project_id": "3"}) == "project_id:3"
    assert worker_breaker.caller_of({"gitlab_instance": "a:b"}) != worker_breaker.caller_of({"gitlab_instance": "a"})
    assert ":" not in worker_breaker.caller_of({"gitlab_instance": "a:b"}).split(":", 1)[1]  # escaped
    assert worker_breaker.caller_of({}) == "unknown"
    # A GitLab Duo request with no known user is its instance (its verified token's), never the pseudonymous
    # user id its own header names, which the sender could vary to look like many callers.
    duo = Identity(credential="duo", rate_key="instance-5b5fdc3c-user-0a1b2c",
                   instance_id="5b5fdc3c").job_fields()
    assert duo["gitlab_instance"] == "5b5fdc3c" and worker_breaker.caller_of(duo) == "gitlab_instance:5b5fdc3c"
    assert "gitlab_instance" not in Identity("7", "ada", credential="duo").job_fields()
    odd = Identity(credential="duo", rate_key="instance-a-user-b-user-c", instance_id="a-user-b").job_fields()
    assert odd["gitlab_instance"] == "a-user-b"  # the instance as its token names it, whatever its id holds


def test_a_429_with_retry_after_cools_for_that_long(providers, client):
    gateway = config(providers, breaker_yaml={"failures": 5, "max_cool_down": "30s"})
    outage(providers[1], 429, retry_after=20)
    runtime = Runtime(None, gateway)
    deployments = runtime.for_model("pool")
    for _ in range(6):
        job = request()
        assert deployments.serve(job, lambda m, out, job=job: runtime._run(m, job, out), None, client,
                                 RateLimiter(client)).served_by == "pool/d0"
    assert calls(providers[1]) == 1
    state = breaker.read_states(client, gateway.model("pool"))["d1"]
    assert state.state == breaker.COOLING and 18 < state.until - time.time() <= 20


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


def test_every_deployment_down_is_deployments_unavailable(providers, client):
    gateway = config(providers, breaker_yaml={"failures": 1, "cool_down": "30s"})
    outage(providers[0], 503)
    outage(providers[1], 500)
    with pytest.raises(DeploymentsUnavailable) as failed:
        serve(gateway, client, request(user="1"))
    assert failed.value.retry_after is None  # one user's failures open nothing (breaker.min_callers)...
    assert calls(providers[0]) + calls(providers[1]) == 3  # ...so all three attempts went out
    with pytest.raises(DeploymentsUnavailable) as failed:
        serve(gateway, client, request(user="2"))
    assert "HTTP 50" in failed.value.message and failed.value.status == 503
    assert calls(providers[0]) + calls(providers[1]) == 5  # each tried once for a second user, then cooling
    assert 29 < failed.value.retry_after <= 30
    # Both now cooling: the next request is refused without a call.
    before = calls(providers[0]) + calls(providers[1])
    with pytest.raises(DeploymentsUnavailable):
        serve(gateway, client, request())
    assert calls(providers[0]) + calls(providers[1]) == before
    assert breaker.unavailable(client, gateway.model("pool")) is False  # no fallbacks: never asks Redis


def test_unavailable_reads_redis_only_for_a_model_with_fallbacks(providers, client):
    gateway = parse_config({"models": [
        {"name": "pool", "fallbacks": ["spare"], "deployments": [
            {"name": "a", "type": "generic", "base_url": f"{providers[0]}/v1"},
            {"name": "b", "type": "generic", "base_url": f"{providers[1]}/v1"}]},
        {"name": "spare", "type": "generic", "base_url": f"{providers[2]}/v1"}], "routes": []}, {})
    pool = gateway.model("pool")
    assert breaker.unavailable(client, pool, max_age=0) is False
    client.hset(deployment_health_key("pool"), mapping={"a|failed": "http_401", "b|cool": repr(time.time() + 60)})
    assert breaker.unavailable(client, pool, max_age=0) is True
    client.hset(deployment_health_key("pool"), "b|cool", repr(time.time() - 1))  # a probe is due
    assert breaker.unavailable(client, pool, max_age=0) is False


def test_a_401_marks_the_deployment_failed_until_cleared(providers, client):
    gateway = config(providers)
    model = gateway.model("pool")
    outage(providers[1], 401)
    for _ in range(50):  # the pick is random (1 in 2): until d1 has been tried (1 in 2**50 it never is)
        outcome, _ = serve(gateway, client, request())
        assert outcome.served_by == "pool/d0"
        if calls(providers[1]):
            break
    for _ in range(5):  # failed: never tried again
        assert serve(gateway, client, request())[0].served_by == "pool/d0"
    assert calls(providers[1]) == 1
    assert breaker.read_states(client, model)["d1"] == breaker.DeploymentState(breaker.FAILED, reason="http_401")
    assert breaker.clear(client, model, "d1") == ["d1"]
    assert breaker.read_states(client, model)["d1"].state == breaker.HEALTHY


def test_403s_fail_a_deployment_only_when_consecutive(providers, client):
    gateway = config(providers, breaker_yaml={"forbidden": 2})
    model = gateway.model("pool")
    one = worker_breaker.Breaker(model)
    one.states(client)
    assert one.failed(client, "d1", status=403, retry_after=None, probe=False) is None
    one.succeeded(client, "d1", probe=False)  # an answer in between: the count starts again
    assert one.failed(client, "d1", status=403, retry_after=None, probe=False) is None
    assert one.failed(client, "d1", status=403, retry_after=None, probe=False) == breaker.FAILED
    # Through a provider that answers 403: the first moves the call to d0 and leaves d1 in; the second fails it.
    breaker.clear(client, model)
    outage(providers[1], 403)
    seen = []
    deadline = time.time() + 20
    while calls(providers[1]) < 2 and time.time() < deadline:
        assert serve(gateway, client, request())[0].served_by == "pool/d0"  # never a client error
        if calls(providers[1]) == 1 and not seen:
            seen.append(breaker.read_states(client, model)["d1"])
    assert seen == [breaker.DeploymentState(forbidden=1)]
    assert breaker.read_states(client, model)["d1"] == breaker.DeploymentState(breaker.FAILED, reason="http_403",
                                                                               forbidden=2)


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


def test_breaker_keys_escape_what_they_are_built_from():
    hostile = "a:b*c d"
    for key in (deployment_health_key(hostile), deployment_failures_key(hostile, hostile),
                deployment_probe_key(hostile, hostile, 1.5)):
        assert "*" not in key and " " not in key and "a:b" not in key
    assert deployment_probe_key("m", "d", 1.5) != deployment_probe_key("m", "d", 2.5)


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
