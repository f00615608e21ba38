"""What a flood costs GitLab, through gunicorn against the GitLab stand-in: at most
gitlab.max_calls_per_second calls a second per API process, the surplus answered 503 with
Retry-After, callers with a cached identity untouched; and what a flood leaves in Redis."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.gitlab import DEMO_TOKEN
from tests.harness import Stack

CAP = 10
CONFIG = f"""
models:
  - name: chat
    type: generic
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 10s
    workers: 1
routes:
  - name: tiny-per-user         # one request a minute per user: the second is 429
    match: {{model_name: tiny}}
    destination: chat
    rate_limit: {{requests_per_minute: 1, per: user}}
  - name: everyone
    match: {{model_name: chat}}
gitlab:
  max_calls_per_second: {CAP}
  cache_ttl: 60s
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("gitlab-bounds"), CONFIG, web_workers=1, web_threads=16) as gateway:
        yield gateway


def bearer(token: str, **extra) -> dict:
    return {"Authorization": f"Bearer {token}", **extra}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def test_a_burst_of_unknown_tokens_costs_gitlab_at_most_the_cap_and_cached_callers_go_on(stack):
    assert stack.chat("chat", "prime", headers=bearer(DEMO_TOKEN)).status_code == 200  # alice is cached now
    requests.post(f"{stack.gitlab_url}/_gitlab/reset", timeout=5).raise_for_status()
    tokens = ["glpat-" + secrets.token_hex(10) for _ in range(100)]
    cached: list[int] = []
    stop = threading.Event()

    def alice_meanwhile():
        while not stop.is_set():
            cached.append(stack.chat("chat", "during the burst", headers=bearer(DEMO_TOKEN)).status_code)

    def unknown(token: str) -> requests.Response:
        return stack.chat("chat", "flood", headers=bearer(token))

    alice = threading.Thread(target=alice_meanwhile)
    began = time.monotonic()
    alice.start()
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(unknown, tokens))
    elapsed = time.monotonic() - began
    stop.set()
    alice.join(30)

    made = [call for call in stack.gitlab_calls("/api/v4/user") if call["token_sha256"] != digest(DEMO_TOKEN)]
    refused = [a for a in answers if a.status_code == 503]
    assert sorted({a.status_code for a in answers}) == [401, 503]
    assert len(made) == sum(a.status_code == 401 for a in answers)  # each call GitLab got was one 401
    assert CAP <= len(made) <= CAP * (elapsed + 1), (len(made), elapsed)
    for answer in refused:
        assert answer.json()["error"]["code"] == "gitlab_unavailable"
        assert int(answer.headers["Retry-After"]) >= 1
    assert cached and set(cached) == {200}, cached  # alice's cached identity never met the cap


def test_a_refusal_after_the_credential_check_names_the_caller_in_its_access_record(stack):
    assert stack.chat("tiny", "one", headers=bearer(DEMO_TOKEN)).status_code == 200
    limited = stack.chat("tiny", "two", headers=bearer(DEMO_TOKEN, **{"X-Request-Id": "bounds-429"}))
    assert limited.status_code == 429
    record = stack.access_record("bounds-429")
    assert (record["status"], record["user_id"], record["username"]) == (429, "2", "alice")


def test_made_up_projects_leave_keys_that_expire_within_a_minute(stack):
    for index in range(5):
        response = stack.chat("chat", "x", headers=bearer(DEMO_TOKEN, **{"X-Gitlab-Project-Id": f"made/up-{index}"}))
        assert response.status_code == 403 and response.json()["error"]["code"] == "project_not_found"
    client = stack.redis()
    keys = list(client.scan_iter("aigw:gitlab:project:made/up-*"))
    assert len(keys) == 5
    assert all(0 < client.ttl(key) <= 60 for key in keys)
