"""Rate limits in Redis, exact across processes. Periods are shrunk for the tests
(AIGW_TEST_WINDOW_SCALE=0.25: a "minute" is 15 s, long enough for a burst on a
loaded machine); the mechanism is the same."""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import pytest
import requests

from sandbox.gitlab import DAVE_TOKEN, DEMO_TOKEN, ERIN_TOKEN
from shared.ratelimit import estimate_tokens
from tests.harness import Process, Stack, wait_for

WINDOW = 15.0  # seconds: a minute times the scale below
CONFIG = """
models:
  - name: limited
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 5s
    workers: 1
    rate_limit: {requests_per_minute: 60}
  - name: open
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 5s
    workers: 1
    rate_limit: {requests_per_minute: 1000}
  - name: tight
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 5s
    workers: 1
    rate_limit: {requests_per_minute: 2}
  - name: tokens
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 5s
    workers: 1
  - name: small
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 2s
    workers: 1
    concurrency: 1
    max_queue_depth: 1
    rate_limit: {requests_per_minute: 100}
  - name: late
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 2s
    workers: 0
    rate_limit: {requests_per_minute: 100}
  - name: restartable
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 5s
    workers: 1
    rate_limit: {requests_per_day: LIMIT}  # a day: the restart cannot outlast the window
routes:
  - name: dave-shared           # one user's allowance, shared by everything the route admits
    match: {gitlab_user_id: "5", model_name: [open, tight]}
    rate_limit: {requests_per_minute: 3}
  - name: platform-per-user     # each user admitted by the group route gets their own
    match: {gitlab_group_id: "11", model_name: open}
    rate_limit: {requests_per_minute: 4, per: user}
  - name: token-budget
    match: {model_name: tokens}
    rate_limit: {tokens_per_minute: 200}
  - name: everything-else
    match: {}
"""


def config_with(limit: int) -> str:
    return CONFIG.replace("LIMIT", str(limit))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("limits"), config_with(3), web_workers=2,
               env={"AIGW_TEST_WINDOW_SCALE": "0.25"}) as gateway:
        yield gateway


def send(url: str, model: str, token: str, project: str | None = None, content: str = "hi", **extra):
    headers = {"Authorization": f"Bearer {token}"}
    if project:
        headers["X-Gitlab-Project-Id"] = project
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return requests.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=30)


def burst(url: str, count: int) -> list[tuple[int, dict, str]]:
    """One sender process: ``count`` requests back to back, each on a new connection, so
    the accepts spread over both gunicorn workers."""
    out = []
    for _ in range(count):
        response = requests.post(f"{url}/v1/chat/completions", timeout=30,
                                headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
                                json={"model": "limited", "messages": [{"role": "user", "content": "burst"}]})
        out.append((response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.text))
    return out


def log_size(stack: Stack, scope: str, kind: str = "requests", period: int = 60) -> int:
    return stack.redis().zcard(f"aigw:rl:{scope}:{kind}:{period}:log")


def test_a_limit_admits_exactly_n_across_processes_then_slides(stack):
    with ProcessPoolExecutor(8) as senders:  # 8 processes sending at once, to 2 gunicorn workers
        results = [r for batch in senders.map(burst, [stack.url] * 8, [13] * 8) for r in batch]
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 60
    assert statuses.count(429) == 104 - 60
    for status, headers, text in results:
        if status == 429:
            error = json.loads(text)["error"]
            assert error["code"] == "rate_limited" and error["type"] == "rate_limit_error"
            assert "model 'limited'" in error["message"]
            assert int(headers["retry-after"]) >= 1
            assert headers["x-ratelimit-limit-requests"] == "60"
            assert headers["x-ratelimit-remaining-requests"] == "0"
    burst_records = stack.access_records(lambda found: sum(r.get("model") == "limited" for r in found) >= 104)
    pids = {r["pid"] for r in burst_records if r.get("model") == "limited"}
    assert len(pids) >= 2  # both gunicorn workers served the burst
    assert log_size(stack, "model:limited") == 60  # refused requests took nothing, and were never enqueued
    assert wait_for(lambda: send(stack.url, "limited", DEMO_TOKEN).status_code == 200, timeout=WINDOW * 2,
                    interval=0.25, message="the window to slide")


def test_each_user_gets_their_own_allowance_inside_a_group_route(stack):
    alice = [send(stack.url, "open", DEMO_TOKEN, "100").status_code for _ in range(5)]
    erin = [send(stack.url, "open", ERIN_TOKEN, "101").status_code for _ in range(5)]
    assert alice == [200, 200, 200, 200, 429]
    assert erin == [200, 200, 200, 200, 429]
    refused = send(stack.url, "open", ERIN_TOKEN, "101").json()["error"]
    assert "your user under route 'platform-per-user'" in refused["message"]
    assert "alice" not in refused["message"]


def test_a_refusing_scope_does_not_use_up_another(stack):
    before = log_size(stack, "model:open")
    dave = [send(stack.url, "open", DAVE_TOKEN).status_code for _ in range(5)]
    assert dave == [200, 200, 200, 429, 429]  # the route's 3
    assert log_size(stack, "model:open") == before + 3  # not 5: the model gave nothing to refused requests
    # ...and the other way round: the model refuses, the route keeps its allowance.
    time.sleep(WINDOW)  # let dave's route allowance refill (it is a rolling window: time passing is the point)
    tight = [send(stack.url, "tight", DAVE_TOKEN).status_code for _ in range(3)]
    assert tight == [200, 200, 429]
    error = send(stack.url, "tight", DAVE_TOKEN).json()["error"]
    assert "model 'tight'" in error["message"]
    assert log_size(stack, "route:dave-shared") == 2


def test_a_token_limit_reserves_an_estimate_and_reconciles_from_usage(stack):
    admitted, usage = 0, 0
    amounts_key = "aigw:rl:route:token-budget:tokens:60:amounts"
    while True:
        response = send(stack.url, "tokens", DEMO_TOKEN, content="one two three", max_tokens=5)
        if response.status_code != 200:
            break
        admitted += 1
        usage += response.json()["usage"]["total_tokens"]
        assert response.headers["x-ratelimit-limit-tokens"] == "200"
        assert re.fullmatch(r"\d+(\.\d+)?(ms|s)", response.headers["x-ratelimit-reset-tokens"])
        # The worker settles in the round trip right after the answer's.
        wait_for(lambda: int(stack.redis().hget(amounts_key, "_sum") or 0) == usage, timeout=10,  # noqa: B023
                 message="the settlement")
    assert response.status_code == 429
    per_request = usage // admitted  # the sandbox's usage is deterministic: every request the same
    # Admitted while (reconciled usage so far) + estimate <= 200. The estimate is the
    # prompt's characters / 4 plus max_tokens: larger than the real usage.
    estimate = estimate_tokens({"messages": [{"role": "user", "content": "one two three"}], "max_tokens": 5}, 0)
    assert estimate == -(-len("roleusercontentone two three") // 4) + 5
    assert estimate > per_request
    assert admitted == (200 - estimate) // per_request + 1
    assert int(stack.redis().hget(amounts_key, "_sum")) == usage  # reconciled: the reservations became the real usage


def test_a_request_refused_as_queue_full_takes_no_allowance_and_leaves_nothing_queued(stack):
    results = {}

    def call(name):
        results[name] = send(stack.url, "small", DEMO_TOKEN, content=f"[[sandbox hang]] {name}")

    first = threading.Thread(target=call, args=("one",))
    first.start()
    wait_for(lambda: stack.redis().llen("rq:queue:small") == 0 and log_size(stack, "model:small") == 1,
             timeout=5, message="the first job to start")
    second = threading.Thread(target=call, args=("two",))
    second.start()
    wait_for(lambda: stack.redis().llen("rq:queue:small") == 1, timeout=5, message="a queued job")
    refused = send(stack.url, "small", DEMO_TOKEN)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_full"
    assert log_size(stack, "model:small") == 2
    assert stack.redis().llen("rq:queue:small") == 1  # the refused job was taken back; the second still waits
    first.join(10)
    second.join(10)


def test_a_job_dropped_past_its_deadline_gets_its_allowance_back(stack, tmp_path):
    workers = Process("late", [sys.executable, "-m", "workers", "late"], stack.env, tmp_path / "late.log")
    try:
        wait_for(lambda: stack.redis().smembers("rq:workers:late"), timeout=30, message="a worker")
        workers.signal(signal.SIGSTOP, group=True)
        response = requests.post(f"{stack.url}/v1/chat/completions", timeout=30,
                                 headers={"Authorization": f"Bearer {DEMO_TOKEN}", "X-Request-Id": "late-rl"},
                                 json={"model": "late", "messages": [{"role": "user", "content": "late"}]})
        assert response.status_code == 504
        assert log_size(stack, "model:late") == 1
        workers.signal(signal.SIGCONT, group=True)
        wait_for(lambda: log_size(stack, "model:late") == 0, timeout=15, message="the refund")
        assert "job dropped" in workers.log()
    finally:
        workers.signal(signal.SIGCONT, group=True)
        workers.stop()


def test_a_changed_limit_applies_on_restart_without_losing_counts(stack):
    assert [send(stack.url, "restartable", DEMO_TOKEN).status_code for _ in range(4)] == [200, 200, 200, 429]
    stack.web.stop()
    (stack.dir / "config.yaml").write_text(config_with(5).replace("{sandbox}", stack.sandbox_url))
    stack.web = Process("web", [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "api.wsgi:app"],
                        stack.env, stack.dir / "web-restarted.log")
    stack.wait_ready()
    assert [send(stack.url, "restartable", DEMO_TOKEN).status_code for _ in range(3)] == [200, 200, 429]
    # A day's window keeps a count per bucket, not an entry per admission: once each job settled,
    # nothing is kept for a refund.
    counts = "aigw:rl:model:restartable:requests:86400:counts"
    wait_for(lambda: not [f for f in stack.redis().hkeys(counts) if f.startswith(b"p:")], timeout=10,
             message="the settled jobs' refund entries gone")
    kept = {field: int(value) for field, value in stack.redis().hgetall(counts).items()}
    assert kept.pop(b"_sum") == 5 == sum(kept.values())
    assert len(kept) == stack.redis().zcard("aigw:rl:model:restartable:requests:86400:buckets") <= 5
