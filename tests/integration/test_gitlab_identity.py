"""GitLab identity and routing, against the GitLab stand-in as a real HTTP server."""

from __future__ import annotations

import hashlib
import sys
import threading
import time

import openai
import pytest
import requests

from sandbox.gitlab import (
    ADMIN_TOKEN,
    ALICE_JOB_TOKEN,
    BLOCKED_JOB_TOKEN,
    BLOCKED_TOKEN,
    BOB_TOKEN,
    DAVE_TOKEN,
    DEMO_OAUTH_TOKEN,
    DEMO_TOKEN,
    ERIN_JOB_TOKEN,
    ERIN_TOKEN,
    PROJECT_BOT_TOKEN,
    REPO_ONLY_TOKEN,
)
from tests.harness import PROVIDER_KEY, Process, Stack, wait_for
from tools.embedded_redis import free_port

CONFIG = """
models:
  - name: chat
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 5s
    workers: 1
  - name: premium
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: premium-upstream
    timeout: 5s
    workers: 1
routes:
  - name: ml-premium            # a subgroup: projects under acme/platform/ml only
    match: {gitlab_group_id: "12", model_name: premium}
  - name: platform-chat         # a group: every project below acme/platform, subgroups too
    match: {gitlab_group_id: "11", model_name: chat}
  - name: api-fast              # an alias, for one project
    match: {gitlab_project_id: "100", model_name: fast}
    destination: chat
  - name: dave-direct           # one user, without a project
    match: {gitlab_user_id: "5", model_name: chat}
  - name: handbook              # a project named by its path, any model
    match: {gitlab_project_id: "acme/handbook"}
gitlab:
  cache_ttl: 2s
  local_cache_ttl: 0s   # each test empties the cache in Redis; no process may keep a copy
  outage_grace: 4s
  min_access_level: 30
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("gitlab"), CONFIG) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def clean_slate(stack):
    """Each test starts with an empty GitLab cache, call log and no faults."""
    requests.post(f"{stack.gitlab_url}/_gitlab/reset", timeout=5).raise_for_status()
    client = stack.redis()
    for key in client.scan_iter("aigw:gitlab*"):  # answers, refusals, single-flight locks and wake-ups
        client.delete(key)
    yield


def bearer(token: str, project: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    if project is not None:
        headers["X-Gitlab-Project-Id"] = project
    return headers


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def user_calls(stack: Stack, token: str) -> int:
    return sum(1 for call in stack.gitlab_calls("/api/v4/user") if call["token_sha256"] == digest(token))


def error_of(response: requests.Response) -> dict:
    assert "Traceback" not in response.text
    return response.json()["error"]


# -- credentials ---------------------------------------------------------------

def test_missing_credential_is_401(stack):
    response = stack.chat("chat", "hi", headers={"Authorization": ""})
    assert response.status_code == 401
    assert error_of(response)["code"] == "missing_credentials"
    assert error_of(response)["type"] == "authentication_error"


def test_invalid_token_is_401_and_remembered(stack):
    for _ in range(3):
        response = stack.chat("chat", "hi", headers=bearer("glpat-not-a-real-token"))
        assert response.status_code == 401
        assert error_of(response)["code"] == "invalid_credentials"
    assert user_calls(stack, "glpat-not-a-real-token") == 1  # the refusal is cached for 10 s


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {DEMO_TOKEN}"},
    {"PRIVATE-TOKEN": DEMO_TOKEN},
    {"x-api-key": DEMO_TOKEN},
    {"Authorization": f"Bearer {DEMO_OAUTH_TOKEN}"},
], ids=["bearer", "private-token", "x-api-key", "oauth"])
def test_each_token_kind_is_accepted(stack, headers):
    response = stack.chat("chat", "kinds", headers={**headers, "X-Gitlab-Project-Id": "100"})
    assert response.status_code == 200, response.text


def test_project_access_token_acts_as_its_bot_user(stack):
    response = stack.chat("chat", "bot", headers=bearer(PROJECT_BOT_TOKEN, "acme/platform/api"))
    assert response.status_code == 200, response.text


def test_job_token_uses_the_jobs_project(stack):
    response = stack.chat("chat", "from ci", headers={"JOB-TOKEN": ALICE_JOB_TOKEN})
    assert response.status_code == 200, response.text
    same = stack.chat("chat", "from ci", headers={"JOB-TOKEN": ALICE_JOB_TOKEN, "X-Gitlab-Project-Id": "100"})
    assert same.status_code == 200
    by_path = stack.chat("chat", "ci",
                         headers={"JOB-TOKEN": ALICE_JOB_TOKEN, "X-Gitlab-Project-Id": "acme/platform/api"})
    assert by_path.status_code == 200


def test_job_token_with_a_foreign_project_is_403(stack):
    response = stack.chat("chat", "sneaky", headers={"JOB-TOKEN": ERIN_JOB_TOKEN, "X-Gitlab-Project-Id": "100"})
    assert response.status_code == 403
    assert error_of(response)["code"] == "project_mismatch"
    assert error_of(response)["type"] == "permission_error"


def test_two_different_credentials_are_refused(stack):
    response = stack.chat("chat", "hi", headers={"Authorization": f"Bearer {DEMO_TOKEN}", "PRIVATE-TOKEN": BOB_TOKEN})
    assert response.status_code == 401


@pytest.mark.parametrize("other", [{"Authorization": f"Bearer {DEMO_TOKEN}"}, {"PRIVATE-TOKEN": BOB_TOKEN},
                                   {"x-api-key": DEMO_TOKEN}])
def test_a_job_token_with_another_credential_is_refused_not_taken_as_the_job(stack, other):
    response = stack.chat("chat", "hi", headers={"JOB-TOKEN": ALICE_JOB_TOKEN, **other})
    assert response.status_code == 401 and error_of(response)["code"] == "invalid_credentials"
    assert "two different credentials" in error_of(response)["message"]
    assert stack.gitlab_calls() == []


def test_a_token_refused_as_a_job_token_still_works_as_what_it_is(stack):
    as_job = stack.chat("chat", "hi", headers={"JOB-TOKEN": DEMO_TOKEN, "X-Gitlab-Project-Id": "100"})
    assert as_job.status_code == 401
    as_bearer = stack.chat("chat", "hi", headers=bearer(DEMO_TOKEN, "100"))  # at once, not 10 s later
    assert as_bearer.status_code == 200, as_bearer.text


def test_a_token_without_an_api_scope_is_401_naming_the_scope_it_needs(stack):
    response = stack.chat("chat", "hi", headers=bearer(REPO_ONLY_TOKEN, "100"))
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "invalid_credentials" and "read_user" in error["message"] and "api" in error["message"]


# -- users, projects, memberships ----------------------------------------------

def test_blocked_user_is_403_with_gitlab_s_message(stack):
    for headers in (bearer(BLOCKED_TOKEN, "100"), {"JOB-TOKEN": BLOCKED_JOB_TOKEN}):
        response = stack.chat("chat", "hi", headers=headers)
        assert response.status_code == 403
        assert error_of(response)["code"] == "user_blocked"
        assert "403 Forbidden - Your account has been blocked." in error_of(response)["message"]


def test_user_blocked_after_caching_is_refused_once_the_cache_expires(stack):
    assert stack.chat("chat", "hi", headers=bearer(DAVE_TOKEN)).status_code == 200
    requests.post(f"{stack.gitlab_url}/_gitlab/users/5/state", json={"state": "blocked"}, timeout=5)
    refused = wait_for(lambda: stack.chat("chat", "hi", headers=bearer(DAVE_TOKEN)).status_code == 403,
                       timeout=10, interval=0.5, message="the block to take effect after cache_ttl")
    assert refused


def test_reporter_is_below_the_minimum_access_level(stack):
    response = stack.chat("chat", "hi", headers=bearer(BOB_TOKEN, "100"))
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "insufficient_access"
    assert "Reporter" in error["message"] and "Developer" in error["message"]


def test_a_non_member_gets_the_answer_of_a_missing_project(stack):
    # Issue 13: this was insufficient_access naming the project's path ("is not a member in 'other/secret'").
    answers = {}
    for ref in ("200", "999", "other/secret", "no/such-project"):
        response = stack.chat("chat", "hi", headers={**bearer(DEMO_TOKEN, ref), "X-Request-Id": f"nm-{ref[:2]}"})
        assert response.status_code == 403
        error = error_of(response)
        assert error["code"] == "project_not_found"
        assert f"'{ref}'" in error["message"] and (ref == "other/secret" or "secret" not in error["message"])
        answers[ref] = error["message"].replace(f"'{ref}'", "'<ref>'")
    assert len(set(answers.values())) == 1, answers


def test_a_public_project_does_not_make_a_member(stack):
    outsider = stack.chat("chat", "hi", headers=bearer(DAVE_TOKEN, "acme/handbook"))
    assert outsider.status_code == 403
    assert error_of(outsider)["code"] == "project_not_found"  # was insufficient_access before issue 13
    member = stack.chat("chat", "hi", headers=bearer(DEMO_TOKEN, "acme/handbook"))  # Developer via group acme
    assert member.status_code == 200, member.text


def test_unknown_project_is_403(stack):
    response = stack.chat("chat", "hi", headers=bearer(DEMO_TOKEN, "acme/no-such-project"))
    assert response.status_code == 403
    assert error_of(response)["code"] == "project_not_found"


@pytest.mark.parametrize("ref", ["alice/scratch:lock", "100:lock", "100:done", ".", "..", "./x", "a//b", "x" * 256,
                                 "a b", "*"])
def test_a_malformed_project_reference_is_400_before_any_gitlab_call(stack, ref):
    response = stack.chat("chat", "hi", headers=bearer(BOB_TOKEN, ref))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_request" and error["param"] == "X-Gitlab-Project-Id"
    assert stack.gitlab_calls() == []  # neither Bob's token nor the gateway's went anywhere


def test_no_caller_can_take_the_single_flight_lock_of_another_s_project(stack):
    """Issue 13, attack 2: "100:lock" was the lock key of project 100's cache entry; Alice then waited 12 s."""
    for ref in ("100:lock", "100:done", "acme/platform/api:lock"):
        assert stack.chat("chat", "hi", headers=bearer(BOB_TOKEN, ref)).status_code == 400
    began = time.monotonic()
    response = stack.chat("chat", "hi", headers=bearer(DEMO_TOKEN, "100"), timeout=10)
    assert response.status_code == 200, response.text
    assert time.monotonic() - began < 5  # was 12 s, then 503
    assert not any(b"lock" in key and b"gitlab-lock" not in key for key in stack.redis().scan_iter("aigw:*"))


# -- routes ----------------------------------------------------------------------

def test_inherited_membership_and_subgroup_route(stack):
    # alice is a Developer of group acme, so of acme/platform/ml/models; that project
    # is under acme/platform/ml (group 12), where the premium route applies.
    response = stack.chat("premium", "deep", headers=bearer(DEMO_TOKEN, "101"))
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "premium"
    # ...and the acme/platform group route covers the subgroup's project too.
    assert stack.chat("chat", "deep", headers=bearer(DEMO_TOKEN, "101")).status_code == 200


def test_direct_membership_in_a_subgroup_project(stack):
    response = stack.chat("premium", "erin", headers=bearer(ERIN_TOKEN, "acme/platform/ml/models"))
    assert response.status_code == 200, response.text


def test_no_route_is_403_naming_model_and_project(stack):
    response = stack.chat("premium", "nope", headers=bearer(DEMO_TOKEN, "100"))
    assert response.status_code == 403
    error = error_of(response)
    assert error["code"] == "no_route"
    assert "'premium'" in error["message"] and "acme/platform/api" in error["message"]


def test_no_project_given_hints_at_the_header(stack):
    response = stack.chat("premium", "nope", headers=bearer(DAVE_TOKEN))
    assert response.status_code == 403
    assert "X-Gitlab-Project-Id" in error_of(response)["message"]
    assert stack.chat("chat", "user route", headers=bearer(DAVE_TOKEN)).status_code == 200


def test_alias_route_serves_another_model(stack):
    response = stack.chat("fast", "alias", headers=bearer(DEMO_TOKEN, "100"))
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "fast"
    assert stack.chat("fast", "alias", headers=bearer(DEMO_TOKEN, "101")).status_code == 403


def test_unknown_model_is_404_after_the_credential_check(stack):
    assert stack.chat("gpt-17", "x", headers={"Authorization": ""}).status_code == 401
    response = stack.chat("gpt-17", "x", headers=bearer(DEMO_TOKEN, "100"))
    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found"


def test_models_lists_only_what_the_caller_may_use(stack):
    def names(headers):
        response = stack.get("/v1/models", headers=headers)
        assert response.status_code == 200, response.text
        return {model["id"] for model in response.json()["data"]}

    assert names(bearer(DEMO_TOKEN, "101")) == {"chat", "premium"}
    assert names(bearer(DEMO_TOKEN, "100")) == {"chat", "fast"}
    assert names(bearer(DEMO_TOKEN, "acme/handbook")) == {"chat", "premium"}
    assert names(bearer(DAVE_TOKEN)) == {"chat"}


def test_openai_sdk_passes_the_gitlab_token_as_its_api_key(stack):
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=DEMO_TOKEN, max_retries=0,
                           default_headers={"X-Gitlab-Project-Id": "acme/platform/ml/models"})
    completion = client.chat.completions.create(model="premium", messages=[{"role": "user", "content": "sdk"}])
    assert completion.choices[0].message.content == "Sandbox reply: sdk"
    assert {model.id for model in client.models.list()} == {"chat", "premium"}
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{stack.url}/v1", api_key="glpat-wrong", max_retries=0).models.list()
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "no"}])


# -- caching and outages ---------------------------------------------------------

def test_cached_identity_makes_no_gitlab_call(stack):
    for _ in range(4):
        assert stack.chat("chat", "again", headers=bearer(DEMO_TOKEN, "100")).status_code == 200
    assert user_calls(stack, DEMO_TOKEN) == 1
    members = [c for c in stack.gitlab_calls() if "/members/all/" in c["path"]]
    assert len(members) == 1


def test_a_burst_with_a_new_token_makes_one_gitlab_call(stack):
    stack.gitlab_fault(delay_ms=600, paths=["/api/v4/user"])
    results = []

    def call():
        results.append(stack.chat("chat", "burst", headers=bearer(DEMO_OAUTH_TOKEN, "100")).status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [200] * 8
    assert user_calls(stack, DEMO_OAUTH_TOKEN) == 1


def test_gitlab_outage_keeps_cached_callers_working_within_the_grace(stack):
    assert stack.chat("chat", "before", headers=bearer(DEMO_TOKEN, "100")).status_code == 200
    primed = time.monotonic()
    stack.gitlab_fault(status=503)
    time.sleep(2.2)  # let the cached identity go stale (cache_ttl 2s): time passing is the point here
    stale = stack.chat("chat", "during", headers=bearer(DEMO_TOKEN, "100"))
    assert stale.status_code == 200, stale.text
    assert user_calls(stack, DEMO_TOKEN) == 2  # it did ask GitLab, which failed
    unknown = stack.chat("chat", "new caller", headers=bearer(ERIN_TOKEN, "101"))
    assert unknown.status_code == 503  # never a 401: an outage is not a bad token
    assert error_of(unknown)["code"] == "gitlab_unavailable"
    assert int(unknown.headers["Retry-After"]) >= 1
    time.sleep(max(0.0, primed + 6.5 - time.monotonic()))  # past cache_ttl + outage_grace (2s + 4s)
    expired = stack.chat("chat", "after grace", headers=bearer(DEMO_TOKEN, "100"))
    assert expired.status_code == 503
    stack.gitlab_fault()
    assert stack.chat("chat", "recovered", headers=bearer(DEMO_TOKEN, "100")).status_code == 200


def test_a_revoked_token_is_refused_and_no_outage_brings_it_back(stack):
    """Issue 13, attack 4: refused after cache_ttl, then accepted again for outage_grace once GitLab was down."""
    assert stack.get("/v1/models", headers=bearer(BOB_TOKEN)).status_code == 200
    requests.post(f"{stack.gitlab_url}/_gitlab/tokens/revoke", json={"token": BOB_TOKEN}, timeout=5).raise_for_status()
    wait_for(lambda: stack.get("/v1/models", headers=bearer(BOB_TOKEN)).status_code == 401, timeout=10,
             interval=0.25, message="the revocation to be seen once the identity is stale (cache_ttl 2 s)")
    client = stack.redis()
    for key in client.scan_iter("aigw:gitlab:rejected:*"):
        client.delete(key)  # as if the 10 s refusal marker had lapsed
    stack.gitlab_fault(status=503)
    during = stack.get("/v1/models", headers=bearer(BOB_TOKEN))
    assert during.status_code == 503 and error_of(during)["code"] == "gitlab_unavailable"  # never 200 again


def test_gitlab_unreachable_or_rate_limiting_is_503_with_retry_after(stack):
    stack.gitlab_fault(close=True)
    down = stack.chat("chat", "hi", headers=bearer(ERIN_TOKEN, "101"))
    assert down.status_code == 503 and error_of(down)["code"] == "gitlab_unavailable"
    stack.gitlab_fault(status=429, retry_after=7)
    limited = stack.chat("chat", "hi", headers=bearer(ERIN_TOKEN, "101"))
    assert limited.status_code == 503
    assert limited.headers["Retry-After"] == "7"


def test_ready_shows_gitlab_reachability_without_failing(stack):
    assert stack.ready().json()["gitlab"]["reachable"] is True  # the administrator's identity is now cached
    stack.gitlab_fault(close=True)

    def unreachable():
        response = stack.ready()
        return response.status_code == 200 and response.json()["gitlab"]["reachable"] is False

    wait_for(unreachable, timeout=15, interval=0.5, message="/ready to show GitLab unreachable")


# -- what is recorded ------------------------------------------------------------

def test_logs_carry_identity_and_route_but_never_a_token(stack):
    response = stack.chat("chat", "log me", headers={**bearer(DEMO_TOKEN, "100"), "X-Request-Id": "who-1"})
    assert response.status_code == 200
    access = stack.access_record("who-1")
    assert access["user_id"] == "2" and access["username"] == "alice"
    assert access["project_id"] == "100" and access["route"] == "platform-chat"
    everything = stack.logs()  # the gateway's processes (the stand-in prints its demo tokens by design)
    for secret in (DEMO_TOKEN, DEMO_OAUTH_TOKEN, ADMIN_TOKEN, BOB_TOKEN, ALICE_JOB_TOKEN, REPO_ONLY_TOKEN,
                   PROVIDER_KEY):
        assert secret not in everything
    stored = b"".join(stack.redis().dump(key) or b"" for key in stack.redis().scan_iter("*"))
    assert DEMO_TOKEN.encode() not in stored and ADMIN_TOKEN.encode() not in stored


@pytest.mark.parametrize("request_id,headers,model,status,code", [
    ("ref-nf", bearer(DEMO_TOKEN, "200"), "chat", 403, "project_not_found"),
    ("ref-ia", bearer(BOB_TOKEN, "100"), "chat", 403, "insufficient_access"),
    ("ref-nr", bearer(DEMO_TOKEN, "100"), "premium", 403, "no_route"),
    ("ref-mn", bearer(DEMO_TOKEN, "100"), "gpt-17", 404, "model_not_found"),
    ("ref-ub", bearer(BLOCKED_TOKEN), "chat", 403, "user_blocked"),
])
def test_the_access_record_of_a_refusal_names_the_caller_where_known(stack, request_id, headers, model, status,
                                                                     code):
    response = stack.chat(model, "hi", headers={**headers, "X-Request-Id": request_id})
    assert response.status_code == status and error_of(response)["code"] == code
    record = stack.access_record(request_id)
    assert record["status"] == status and record["error_code"] == code
    if code == "user_blocked":  # GitLab refused before naming anyone: nobody to name
        assert record.get("user_id") is None
    else:
        assert record["user_id"] in ("2", "3") and record["username"] in ("alice", "bob")


# -- start-up ----------------------------------------------------------------------

def _web(stack: Stack, tmp_path, **env) -> Process:
    return Process("web", [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "api.wsgi:app"],
                   {**stack.env, "PORT": str(free_port()), "WEB_CONCURRENCY": "1", **env}, tmp_path / "web.log")


def test_gitlab_settings_are_required(stack, tmp_path):
    web = _web(stack, tmp_path, GITLAB_URL="", GITLAB_API_TOKEN="")
    assert web.wait(timeout=30) == 2
    assert "GITLAB_URL: required" in web.log() and "GITLAB_API_TOKEN: required" in web.log()
    assert "Traceback" not in web.log()
    web.stop()


def test_a_refused_gateway_token_stops_the_start(stack, tmp_path):
    web = _web(stack, tmp_path, GITLAB_API_TOKEN="glpat-revoked")
    assert web.wait(timeout=30) == 2
    assert "GITLAB_API_TOKEN: GitLab at" in web.log() and "refused it" in web.log()
    assert "glpat-revoked" not in web.log()
    web.stop()


def test_a_non_admin_gateway_token_starts_with_a_warning(stack, tmp_path):
    web = _web(stack, tmp_path, GITLAB_API_TOKEN=DEMO_TOKEN)
    try:
        wait_for(lambda: "is not an administrator's" in web.log(), timeout=30, message="the warning")
        assert web.popen.poll() is None
    finally:
        web.stop()
