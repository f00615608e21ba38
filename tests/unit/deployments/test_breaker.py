"""The breaker: a deployment that fails is cooled down, probed, or failed until cleared; with every
one out, the call is DeploymentsUnavailable (shared.breaker, workers.breaker)."""

from __future__ import annotations

import time

import pytest

from api.identity import Identity
from shared import breaker
from shared.config import parse_config
from shared.errors import DeploymentsUnavailable
from shared.keys import deployment_failures_key, deployment_health_key, deployment_probe_key
from shared.ratelimit import RateLimiter
from tests.unit.deployments.helpers import calls, config, cooled_by_two_callers, outage, request, serve
from workers import breaker as worker_breaker
from workers.runtime import Runtime


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


def test_breaker_keys_escape_what_they_are_built_from():
    hostile = "a:b*c d"
    for key in (deployment_health_key(hostile), deployment_failures_key(hostile, hostile),
                deployment_probe_key(hostile, hostile, 1.5)):
        assert "*" not in key and " " not in key and "a:b" not in key
    assert deployment_probe_key("m", "d", 1.5) != deployment_probe_key("m", "d", 2.5)
