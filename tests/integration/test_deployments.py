"""Several deployments per model, on the real stack (issue 18): the load spread by weight, calls moving off a
deployment that is down, the breaker shared by two worker processes opening and closing with one probe, a 429
storm cooling a deployment, every deployment's quota spent (429 with Retry-After), the deployment metrics, no
retry after a stream's first chunk, and a provider 401 taking a deployment out until it is cleared (inspect) or
the config reloaded (SIGHUP). Each deployment is a sandbox provider process of
its own; an outage is the sandbox's POST /_sandbox/outage (every call answers that status)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sandbox.gitlab import BOB_TOKEN, DAVE_TOKEN, DEMO_TOKEN
from tests.harness import ROOT, Process, Stack, free_port, start_sandbox, wait_for, with_credential

KEY = "${SANDBOX_PROVIDER_KEY}"


def deployment(name: str, url: str, *, weight: int = 1, api_key: str = KEY, kind: str = "generic",
               extra: str = "") -> str:
    return (f"\n      - {{name: {name}, type: {kind}, base_url: \"{url}/v1\", api_key: \"{api_key}\", "
            f"weight: {weight}{extra}}}")


def model(name: str, deployments: str, *, workers: int = 1, timeout: str = "20s",
          breaker: str = "{failures: 3, window: 30s, cool_down: 30s}") -> str:
    return (f"\n  - name: {name}\n    timeout: {timeout}\n    workers: {workers}\n    concurrency: 8"
            f"\n    breaker: {breaker}\n    deployments:{deployments}")


@pytest.fixture(scope="module")
def instances(tmp_path_factory):
    """Four sandbox providers besides the stack's own: a (spread), c (probe), d (storm), e (failover)."""
    directory = tmp_path_factory.mktemp("deployment-providers")
    started: dict[str, tuple[Process, str]] = {}
    try:
        for name in "acde":
            (directory / name).mkdir()
            started[name] = start_sandbox(directory / name, {**os.environ, "PYTHONUNBUFFERED": "1"})
        yield {name: url for name, (_, url) in started.items()}
    finally:
        for process, _ in started.values():
            process.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, instances):
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    config = "models:" + "".join([
        model("spread", deployment("heavy", instances["a"], weight=3) + deployment("light", "{sandbox}")),
        model("failover", deployment("gone", gone) + deployment("sick", instances["e"])
              + deployment("up", "{sandbox}")),
        # One caller's failures open it (min_callers 1): the probe's mechanics, apart from who failed.
        model("probed", deployment("flaky", instances["c"]) + deployment("steady", "{sandbox}"), workers=2,
              breaker="{failures: 2, window: 30s, cool_down: 3s, min_callers: 1}"),
        model("shared", deployment("one", "{sandbox}") + deployment("two", "{sandbox}"),
              breaker="{failures: 2, window: 30s, cool_down: 30s}"),
        model("stormy", deployment("limited", instances["d"]) + deployment("spare", "{sandbox}"),
              breaker="{failures: 10, window: 30s, cool_down: 30s, max_cool_down: 2m}"),
        model("keyed", deployment("revoked", "{sandbox}", api_key="sk-wrong-key") + deployment("good", "{sandbox}")),
        model("relayed", deployment("one", instances["a"], kind="openai") + deployment("two", "{sandbox}",
                                                                                       kind="openai")),
        model("quota", deployment("q1", "{sandbox}", extra=", rate_limit: {requests_per_day: 1}")
              + deployment("q2", "{sandbox}", extra=", rate_limit: {requests_per_day: 1}")),
    ]) + "\n"
    with Stack(tmp_path_factory.mktemp("deployments"), config,
               env={"METRICS_ENABLED": "true", "METRICS_PORT": str(free_port())}) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def healthy_instances(instances):
    for url in instances.values():
        requests.post(f"{url}/_sandbox/reset", timeout=5).raise_for_status()


def outage(url: str, status: int | None, **extra) -> None:
    requests.post(f"{url}/_sandbox/outage", json={"status": status, **extra}, timeout=5).raise_for_status()


def calls(url: str) -> int:
    return len(requests.get(f"{url}/_sandbox/log", params={"path": "/v1/chat/completions"},
                            timeout=5).json()["requests"])


def deployment_states(stack: Stack, name: str) -> dict:
    return stack.ready().json()["models"][name]["deployments"]


def test_calls_spread_by_weight_and_say_who_served_them(stack, instances):
    served = Counter()
    for i in range(300):
        answer = stack.chat("spread", f"spread {i}", headers={"X-Request-Id": f"spread-{i}"})
        assert answer.status_code == 200, answer.text
        served[answer.headers["x-aigw-served-by"]] += 1
    assert set(served) <= {"spread/heavy", "spread/light"}
    share = served["spread/heavy"] / 300
    assert 0.65 <= share <= 0.85, served  # weight 3 of 4: 75 %, within 10 points
    assert calls(instances["a"]) == served["spread/heavy"]
    record = stack.access_record("spread-299")
    assert record["served_by"] == answer.headers["x-aigw-served-by"]
    assert instances["a"] not in json.dumps(record)  # a deployment is its name, never its URL
    jobs = [json.loads(line) for line in stack.workers.log().splitlines() if line.startswith("{")]
    job = next(r for r in jobs if r.get("message") == "job done" and r.get("request_id") == "spread-299")
    assert job["served_by"] == record["served_by"]


def test_a_deployment_down_moves_the_calls_with_no_client_error(stack, instances):
    outage(instances["e"], 500)
    sent = Counter()  # two users in turn: one user's 5xx alone open nothing (breaker.min_callers)

    def served_until_both_cool() -> bool:
        sent["n"] += 1
        token = (DEMO_TOKEN, BOB_TOKEN)[sent["n"] % 2]
        answer = stack.chat("failover", "failover", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-aigw-served-by"] == "failover/up"
        states = deployment_states(stack, "failover")
        return states["gone"]["state"] == states["sick"]["state"] == "cooling_down"

    wait_for(served_until_both_cool, timeout=60, message="both failing deployments to cool down")
    # Each failing deployment was called until its breaker opened (3 failures, two users' among them), then
    # left alone.
    opened = calls(instances["e"])
    assert opened >= 3
    for i in range(10):
        answer = stack.chat("failover", f"failover {i}")
        assert answer.status_code == 200 and answer.headers["x-aigw-served-by"] == "failover/up"
    assert calls(instances["e"]) == opened
    assert deployment_states(stack, "failover")["up"] == {"state": "healthy"}


def test_one_users_failing_prompts_never_take_the_model_down_for_another(stack):
    """The review's reproduction: a prompt the provider answers 500 (the sandbox's directive; vLLM does so
    to some inputs) fails on every deployment. One user sending only those opens no breaker, so another
    user is served throughout; a second user's such failures within the window open it for everyone."""
    def chat(token: str, content: str) -> requests.Response:
        return stack.chat("shared", content, headers={"Authorization": f"Bearer {token}"})

    for i in range(4):
        assert chat(DEMO_TOKEN, f"[[sandbox fail=500]] break it {i}").status_code == 503
        answer = chat(BOB_TOKEN, f"hello {i}")
        assert answer.status_code == 200, answer.text
    assert deployment_states(stack, "shared") == {"one": {"state": "healthy"}, "two": {"state": "healthy"}}
    assert chat(BOB_TOKEN, "[[sandbox fail=500]] break it too").status_code == 503
    states = deployment_states(stack, "shared")
    assert {states["one"]["state"], states["two"]["state"]} == {"cooling_down"}
    answer = chat(DAVE_TOKEN, "hello")
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "deployments_unavailable"


def _burst(stack: Stack, name: str, count: int, prefix: str) -> list[requests.Response]:
    results: dict[int, requests.Response] = {}

    def call(i: int) -> None:
        results[i] = stack.chat(name, f"{prefix} {i}", headers={"X-Request-Id": f"{prefix}-{i}"})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return [results[i] for i in range(count)]


def _worker_pids(stack: Stack, request_ids: set[str]) -> set[int]:
    records = [json.loads(line) for line in stack.workers.log().splitlines() if line.startswith("{")]
    return {r["pid"] for r in records if r.get("message") == "job done" and r.get("request_id") in request_ids}


def test_the_breaker_opens_for_every_worker_and_closes_after_one_probe(stack, instances):
    flaky = instances["c"]
    outage(flaky, 503)
    def served_until_flaky_cools() -> bool:  # two failures within the window open it; no client sees one
        assert stack.chat("probed", "open").status_code == 200
        return deployment_states(stack, "probed")["flaky"]["state"] == "cooling_down"

    wait_for(served_until_flaky_cools, timeout=30, message="flaky to cool down")
    time.sleep(1.1)  # a worker reads the states at most a second old (shared.breaker.REFRESH)
    opened = calls(flaky)
    assert opened >= 2
    # While it cools, neither worker process calls it: both read the state in Redis.
    answers = _burst(stack, "probed", 24, "cooling")
    assert all(a.status_code == 200 and a.headers["x-aigw-served-by"] == "probed/steady" for a in answers)
    assert calls(flaky) == opened
    assert len(_worker_pids(stack, {f"cooling-{i}" for i in range(24)})) == 2  # both processes served some
    # The cool-down ends with the provider still down: of a burst from both processes, one call probes it.
    wait_for(lambda: deployment_states(stack, "probed")["flaky"].get("probe_in_seconds") == 0, timeout=10,
             message="the cool-down to end")
    answers = _burst(stack, "probed", 16, "probing")
    assert all(a.status_code == 200 for a in answers)
    assert calls(flaky) == opened + 1
    assert deployment_states(stack, "probed")["flaky"]["probe_in_seconds"] > 0  # the failed probe cooled it again
    # Up again: after the next cool-down one probe answers, and the deployment is healthy for everyone.
    outage(flaky, None)
    wait_for(lambda: deployment_states(stack, "probed")["flaky"].get("probe_in_seconds") == 0, timeout=10,
             message="the second cool-down to end")
    _burst(stack, "probed", 8, "recovering")
    wait_for(lambda: deployment_states(stack, "probed")["flaky"] == {"state": "healthy"}, timeout=5,
             message="flaky healthy again")
    time.sleep(1.1)
    answers = _burst(stack, "probed", 24, "healthy")
    assert "probed/flaky" in {a.headers["x-aigw-served-by"] for a in answers}


def test_a_429_storm_with_retry_after_cools_the_deployment(stack, instances):
    outage(instances["d"], 429, retry_after=60)

    def served_until_limited_cools() -> bool:
        answer = stack.chat("stormy", "storm")
        assert answer.status_code == 200 and answer.headers["x-aigw-served-by"] == "stormy/spare"
        return deployment_states(stack, "stormy")["limited"]["state"] == "cooling_down"

    wait_for(served_until_limited_cools, timeout=30, message="limited to cool down")
    for i in range(10):
        answer = stack.chat("stormy", f"storm {i}")
        assert answer.status_code == 200 and answer.headers["x-aigw-served-by"] == "stormy/spare"
    assert calls(instances["d"]) == 1  # one 429 with Retry-After was enough (its breaker wants 10 failures)
    state = deployment_states(stack, "stormy")["limited"]
    assert state["state"] == "cooling_down" and 50 <= state["probe_in_seconds"] <= 60


def test_when_every_deployment_s_quota_is_spent_the_client_hears_429_with_retry_after(stack):
    served = {stack.chat("quota", f"q {i}").headers.get("x-aigw-served-by") for i in range(2)}
    assert served == {"quota/q1", "quota/q2"}  # each deployment's one call a day
    refused = stack.chat("quota", "one more")
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "upstream_rate_limited"
    # When the older of the two frees up: once its 5-minute bucket has left the day (shared.ratelimit_scripts).
    assert 80000 < int(refused.headers["Retry-After"]) <= 86400 + 300


def scrape(stack: Stack) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"http://127.0.0.1:{stack.env['METRICS_PORT']}/metrics", timeout=10).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == w for k, w in labels.items()))


def test_metrics_show_each_deployment_s_state_calls_and_failures(stack, instances):
    """After the tests above: spread's 300 calls, failover's refused connections, stormy's one 429 (limited is
    cooling down for a minute)."""
    samples = scrape(stack)
    state = {(dict(ls)["model"], dict(ls)["deployment"], dict(ls)["state"]): v for (n, ls), v in samples.items()
             if n == "aigw_deployment_state"}
    assert state[("stormy", "limited", "cooling_down")] == 1 and state[("stormy", "limited", "healthy")] == 0
    assert state[("stormy", "spare", "healthy")] == 1 and state[("stormy", "spare", "failed")] == 0
    shown = {(m, d) for m, facts in stack.ready().json()["models"].items() for d in facts.get("deployments", {})}
    assert {(m, d) for m, d, _ in state} == shown  # the deployments /ready shows, each in one state of three
    for m, d in shown:
        assert sum(state[(m, d, s)] for s in ("healthy", "cooling_down", "failed")) == 1, (m, d)
    calls_total = "aigw_deployment_calls_total"
    assert value(samples, calls_total, model="spread", deployment="heavy") >= 195
    assert value(samples, calls_total, model="spread", deployment="heavy") + value(
        samples, calls_total, model="spread", deployment="light") == 300
    failures = "aigw_deployment_failures_total"
    assert value(samples, failures, model="failover", deployment="gone", reason="connect") >= 1
    assert value(samples, failures, model="stormy", deployment="limited", reason="status_429") == 1
    assert value(samples, failures, model="spread") == 0
    labels = {v for (n, ls), _ in samples.items() if n.startswith("aigw_deployment") for _, v in ls}
    assert not any("127.0.0.1" in label or "http" in label for label in labels)  # names, never URLs


def test_a_mid_stream_failure_is_not_retried(stack, instances):
    body = {"model": "spread", "stream": True,
            "messages": [{"role": "user", "content": "[[sandbox fail_after=2]] one two three four five"}]}
    with requests.post(f"{stack.url}/v1/chat/completions", json=body, stream=True, timeout=30,
                       headers=with_credential({"X-Request-Id": "broken-stream"})) as answer:
        assert answer.status_code == 200
        served = answer.headers["x-aigw-served-by"]
        text = answer.content.decode()
    assert '"content"' in text and '"error"' in text  # some chunks, then the error event
    assert served in ("spread/heavy", "spread/light")
    counted = [requests.get(f"{url}/_sandbox/calls", params={"key": "broken-stream"}, timeout=5).json()["count"]
               for url in (instances["a"], stack.sandbox_url)]
    assert sum(counted) == 1


def test_a_provider_401_takes_the_deployment_out_until_cleared_or_reloaded(stack):
    def served_by_good_until_revoked_fails() -> bool:
        answer = stack.chat("keyed", "keyed")
        assert answer.status_code == 200 and answer.headers["x-aigw-served-by"] == "keyed/good"
        return deployment_states(stack, "keyed")["revoked"] == {"state": "failed", "reason": "http_401"}

    wait_for(served_by_good_until_revoked_fails, timeout=30, message="revoked failed")
    assert "deployment failed: the provider refused the gateway's credentials" in stack.workers.log()
    time.sleep(1.2)  # past any worker's cached view: still failed, never called again
    before = calls(stack.sandbox_url)
    for i in range(4):
        assert stack.chat("keyed", f"still {i}").headers["x-aigw-served-by"] == "keyed/good"
    assert calls(stack.sandbox_url) - before == 4
    shown = subprocess.run([sys.executable, "-m", "workers.inspect", "deployments", "--json"], cwd=ROOT, env=stack.env,
                           capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["models"]["keyed"] == {"revoked": {"state": "failed", "reason": "http_401"},
                                                            "good": {"state": "healthy"}}
    # The operator clears it...
    cleared = subprocess.run([sys.executable, "-m", "workers.inspect", "deployments", "keyed", "--clear", "revoked"],
                             cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=30)
    assert cleared.returncode == 0 and "cleared revoked" in cleared.stdout, cleared.stderr
    assert deployment_states(stack, "keyed")["revoked"] == {"state": "healthy"}
    # ...its key is still wrong: the next call to it fails it again; a reload (SIGHUP) clears it too.
    wait_for(lambda: stack.chat("keyed", "again").ok and deployment_states(stack, "keyed")["revoked"]["state"]
             == "failed", timeout=15, message="revoked failed again")
    stack.workers.signal(signal.SIGHUP)
    wait_for(lambda: deployment_states(stack, "keyed")["revoked"] == {"state": "healthy"}, timeout=10,
             message="the reload to clear it")
    # A restart of the workers reads the config anew too (a replaced key usually arrives so): it clears it.
    wait_for(lambda: stack.chat("keyed", "and again").ok and deployment_states(stack, "keyed")["revoked"]["state"]
             == "failed", timeout=15, message="revoked failed once more")
    stack.workers.stop()
    stack.start_workers()
    stack.wait_ready()
    assert deployment_states(stack, "keyed")["revoked"] == {"state": "healthy"}


def test_a_conversation_continues_on_the_deployment_that_holds_it(stack):
    """Passed-through Responses API responses are kept by the provider: a previous_response_id goes to the
    deployment whose provider has it (each sandbox keeps its own), whichever the pick would choose."""
    headers = with_credential({})
    first = requests.post(f"{stack.url}/v1/responses", json={"model": "relayed", "input": "hello"}, headers=headers,
                          timeout=30)
    assert first.status_code == 200, first.text
    holder, previous = first.headers["x-aigw-served-by"], first.json()["id"]
    for i in range(8):
        answer = requests.post(f"{stack.url}/v1/responses", headers=headers, timeout=30,
                               json={"model": "relayed", "input": f"and {i}", "previous_response_id": previous})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-aigw-served-by"] == holder
        previous = answer.json()["id"]
    fetched = requests.get(f"{stack.url}/v1/responses/{previous}", headers=headers, timeout=30)
    assert fetched.status_code == 200 and fetched.headers["x-aigw-served-by"] == holder
