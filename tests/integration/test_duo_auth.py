"""GitLab Duo's authentication through the real gateway (gunicorn, two API processes) against the
GitLab stand-in publishing OIDC discovery and keys and minting the instance's tokens: every refusal
of the issue on the wire, in GitLab's AI gateway's words; a rotated key accepted at the next
refetch; a flood of unknown keys costing GitLab at most one key fetch per process per interval; the
user header believed only with a valid token; the project only where that user has access; the
token never in a log. The endpoint is POST /v1/search/gitlab-docs, which needs the token and no
model. Each check in process: tests/unit/test_duo_auth.py."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.gitlab_oidc import INSTANCE_ID
from tests.duo_requests import headers_18, mint
from tests.harness import Stack, wait_for
from tests.stack_models import sandbox_model

REFETCH_INTERVAL = 3.0
CONFIG = "models:\n" + sandbox_model("chat", timeout="5s") + f"""duo:
  keys_refetch_interval: {REFETCH_INTERVAL:g}s
gitlab:
  local_cache_ttl: 0s
"""
DOCS = "/v1/search/gitlab-docs"
JWKS = "/oauth/discovery/keys"
SEARCH = {"type": "search", "metadata": {"source": "GitLab EE", "version": "18.9.0"},
          "payload": {"query": "What is a merge train?"}}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("duo-auth"), CONFIG, web_workers=2) as stack:
        yield stack


def search(gateway: Stack, headers: dict, body: dict | None = None) -> requests.Response:
    return requests.post(f"{gateway.url}{DOCS}", json=body or SEARCH, headers=headers, timeout=30)


def jwks_fetches(gateway: Stack) -> int:
    return len(gateway.gitlab_calls(JWKS))


def test_a_valid_18x_call_names_the_user_and_the_project_they_may_use(gateway):
    token = mint(gateway)
    sent = headers_18(token)
    answer = search(gateway, sent, {**SEARCH, "project_path": "acme/platform/api"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["response"] == {"results": []}
    record = gateway.access_record(sent["X-Request-ID"])
    assert (record["status"], record["user_id"], record["username"]) == (200, "2", "alice")
    assert (record["project_id"], record["gitlab_instance_id"]) == ("100", INSTANCE_ID)
    # bob is a Reporter there, below min_access_level: he is named, the project does not count.
    bob = headers_18(token, x_gitlab_user_id="3")
    assert search(gateway, bob, {**SEARCH, "project_path": "acme/platform/api"}).status_code == 200
    record = gateway.access_record(bob["X-Request-ID"])
    assert (record["user_id"], record["username"], record["project_id"]) == ("3", "bob", None)
    assert token not in gateway.logs()


def test_a_17x_call_has_no_user(gateway):
    token = mint(gateway, claims={"aud": "gitlab-ai-gateway", "scopes": ["code_suggestions", "documentation_search"]})
    sent = {"Authorization": f"Bearer {token}", "X-Gitlab-Authentication-Type": "oidc",
            "X-Gitlab-Instance-Id": INSTANCE_ID, "X-Gitlab-Realm": "self-managed", "X-Request-ID": uuid.uuid4().hex}
    assert search(gateway, sent, {**SEARCH, "project_path": "acme/platform/api"}).status_code == 200
    record = gateway.access_record(sent["X-Request-ID"])
    assert (record["status"], record["user_id"], record["project_id"]) == (200, None, None)


def expired(gateway: Stack) -> str:
    now = int(time.time())
    return mint(gateway, claims={"iat": now - 3700, "nbf": now - 3705, "exp": now - 100})


@pytest.mark.parametrize(("case", "headers", "status", "body"), [
    ("missing", lambda g: headers_18(None, Authorization=None), 401,
     {"error": "No authorization header presented"}),
    ("wrong type", lambda g: headers_18(mint(g), X_Gitlab_Authentication_Type="bearer"), 401,
     {"error": "Invalid authentication token type - only OIDC is supported"}),
    ("wrong audience", lambda g: headers_18(mint(g, claims={"aud": ["gitlab-duo-workflow-service"]})), 401,
     {"error": "Forbidden by auth provider"}),
    ("expired", lambda g: headers_18(expired(g)), 401, {"error": "Forbidden by auth provider"}),
    ("unknown key", lambda g: headers_18(mint(g, key="unpublished")), 401, {"error": "Forbidden by auth provider"}),
    ("realm mismatch", lambda g: headers_18(mint(g), x_gitlab_realm="saas"), 401,
     {"error": "Header mismatch 'X-Gitlab-Realm'"}),
    ("instance-id mismatch", lambda g: headers_18(mint(g), x_gitlab_instance_id="999"), 401,
     {"error": "Header mismatch 'X-Gitlab-Instance-Id'"}),
    ("missing scope", lambda g: headers_18(mint(g, claims={"scopes": ["complete_code"]})), 403,
     {"detail": "Unauthorized to access documentation_search"}),
])
def test_every_refusal_in_gitlabs_ai_gateway_words_and_the_user_header_is_not_believed(
        gateway, case, headers, status, body):
    sent = headers(gateway)
    answer = search(gateway, sent)
    assert (answer.status_code, answer.json()) == (status, body)
    assert answer.headers["Content-Type"].startswith("application/json")
    record = gateway.access_record(sent["X-Request-ID"])
    assert record["error_code"] == ("missing_unit_primitive" if status == 403 else "invalid_instance_token")
    assert record["auth_detail"]
    assert record.get("user_id") is None  # x-gitlab-user-id: 2 was sent
    if "Authorization" in sent:
        assert sent["Authorization"].removeprefix("Bearer ") not in gateway.logs()


def test_an_unknown_key_then_gitlabs_rotated_key_accepted_at_the_next_refetch(gateway):
    assert search(gateway, headers_18(mint(gateway))).status_code == 200  # both processes may hold keys now
    assert search(gateway, headers_18(mint(gateway))).status_code == 200
    requests.post(f"{gateway.gitlab_url}/_gitlab/oidc/rotate", json={}, timeout=30).raise_for_status()
    rotated = mint(gateway)
    started = time.monotonic()
    # Each process refetches once its last fetch is an interval old: within one interval, every one
    # accepts the new key (20 requests in a row, spread over both processes, all accepted).
    wait_for(lambda: {search(gateway, headers_18(rotated)).status_code for _ in range(20)} == {200},
             timeout=REFETCH_INTERVAL + 5, interval=0.2, message="every process to accept the rotated key")
    assert time.monotonic() - started < REFETCH_INTERVAL + 2


def test_a_flood_of_unknown_keys_costs_gitlab_one_fetch_per_process_per_interval(gateway):
    search(gateway, headers_18(mint(gateway)))
    forged = [mint(gateway, key="unpublished", kid=f"made-up-{n}") for n in range(10)]
    # Once the last key fetch (any process's) is an interval old, each process may fetch again.
    wait_for(lambda: time.time() - max(call["time"] for call in gateway.gitlab_calls(JWKS)) > REFETCH_INTERVAL,
             timeout=REFETCH_INTERVAL + 2, interval=0.2, message="the last key fetch to be an interval old")
    before, started = jwks_fetches(gateway), time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda n: search(gateway, headers_18(forged[n % 10])).status_code, range(300)))
    elapsed = time.monotonic() - started
    assert set(statuses) == {401}
    intervals = int(elapsed // REFETCH_INTERVAL) + 1  # in any span this long, fetches a process may make
    assert 1 <= jwks_fetches(gateway) - before <= 2 * intervals, (elapsed, jwks_fetches(gateway) - before)
    print(f"300 forged tokens in {elapsed:.2f}s: {jwks_fetches(gateway) - before} key fetches")
