"""The Authenticator in process, against the GitLab stand-in (a real loopback server) and a real
(embedded) Redis: refusals and what they mean, revocation, the rejection marker, project checks,
and the GitLab call budget. The same paths through gunicorn: tests/integration/test_gitlab_identity.py."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import falcon.testing
import pytest
import requests

from api.gitlab import GitLabClient
from api.gitlab_budget import CallBudget
from api.gitlab_cache import GitLabCache
from api.identity import Authenticator, Identity, credential_from
from sandbox.gitlab_data import (
    ADMIN_TOKEN,
    ALICE_JOB_TOKEN,
    BOB_TOKEN,
    CAROL_JOB_TOKEN,
    CAROL_TOKEN,
    DAVE_TOKEN,
    DEMO_TOKEN,
    ERIN_JOB_TOKEN,
    REPO_ONLY_TOKEN,
)
from shared.config_types import GitLabConfig
from shared.errors import (
    GitLabUnavailable,
    InsufficientAccess,
    InvalidRequest,
    MissingCredentials,
    ProjectMismatch,
    ProjectNotFound,
    Unauthorized,
    UserBlocked,
)
from shared.keys import gitlab_cache_key, gitlab_rejected_key
from tests.harness import wait_for

BLOCKED = "403 Forbidden - Your account has been blocked."


def authenticator(client, gitlab_url, **settings) -> Authenticator:
    config = GitLabConfig(**{"cache_ttl": 60.0, "local_cache_ttl": 0.0, "outage_grace": 60.0, "timeout": 5.0,
                             **settings})
    cache = GitLabCache(client, client, outage_grace=config.outage_grace, fetch_timeout=config.timeout,
                        local_ttl=config.local_cache_ttl)
    return Authenticator(GitLabClient(gitlab_url, ADMIN_TOKEN, config), cache, client, config)


def request(headers: dict):
    req = falcon.testing.create_req(headers=headers)
    req.context = SimpleNamespace()
    return req


def bearer(token: str, project: str | None = None) -> dict:
    return {"Authorization": f"Bearer {token}", **({"X-Gitlab-Project-Id": project} if project else {})}


def calls(gitlab_url: str) -> list[dict]:
    return requests.get(f"{gitlab_url}/_gitlab/calls", timeout=5).json()["calls"]


def control(gitlab_url: str, path: str, body: dict | None = None) -> None:
    if body is None:
        requests.delete(f"{gitlab_url}{path}", timeout=5).raise_for_status()
    else:
        requests.post(f"{gitlab_url}{path}", json=body, timeout=5).raise_for_status()


# -- credentials -------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"JOB-TOKEN": "j0b", "Authorization": "Bearer other"},
    {"JOB-TOKEN": "j0b", "PRIVATE-TOKEN": "other"},
    {"JOB-TOKEN": "j0b", "x-api-key": "other"},
    {"JOB-TOKEN": "j0b", "Authorization": "Basic dXNlcjpwYXNz"},
])
def test_a_job_token_with_another_credential_is_refused(headers):
    with pytest.raises(Unauthorized) as refused:
        credential_from(request(headers))
    assert refused.value.code == "invalid_credentials"


def test_a_job_token_sent_twice_as_the_same_value_is_the_job():
    credential = credential_from(request({"JOB-TOKEN": "j0b", "PRIVATE-TOKEN": "j0b"}))
    assert (credential.kind, credential.secret) == ("job", "j0b")


def test_no_credential_is_missing_credentials():
    with pytest.raises(MissingCredentials):
        credential_from(request({"X-Gitlab-Project-Id": "100"}))


# -- GitLab's refusals -------------------------------------------------------------------

def test_a_blocked_user_gets_user_blocked_with_gitlab_s_message(client, gitlab_url):
    auth = authenticator(client, gitlab_url)
    for headers in (bearer(CAROL_TOKEN), {"JOB-TOKEN": CAROL_JOB_TOKEN}):
        for _ in range(2):  # the second from the rejection marker, with the same answer
            with pytest.raises(UserBlocked) as refused:
                auth.identify(request(headers))
            assert refused.value.status == 403 and BLOCKED in refused.value.message
    assert len(calls(gitlab_url)) == 2


def test_a_token_without_the_scope_gets_401_naming_the_scope_needed(client, gitlab_url):
    auth = authenticator(client, gitlab_url)
    with pytest.raises(Unauthorized) as refused:
        auth.identify(request(bearer(REPO_ONLY_TOKEN)))
    assert refused.value.code == "invalid_credentials"
    assert "read_user" in refused.value.message and "api" in refused.value.message


def test_an_unknown_token_is_401_and_remembered_for_its_own_kind_only(client, gitlab_url):
    auth = authenticator(client, gitlab_url)
    with pytest.raises(Unauthorized):
        auth.identify(request({"JOB-TOKEN": DEMO_TOKEN}))  # a personal token is no job token
    assert client.exists(gitlab_rejected_key("job", _digest(DEMO_TOKEN)))
    assert auth.identify(request(bearer(DEMO_TOKEN))).username == "alice"  # as what it is: at once
    with pytest.raises(Unauthorized):
        auth.identify(request({"JOB-TOKEN": DEMO_TOKEN}))
    assert [c["path"] for c in calls(gitlab_url)] == ["/api/v4/job", "/api/v4/user"]


# -- revocation --------------------------------------------------------------------------

def test_a_revoked_token_loses_its_cached_identity_and_no_outage_brings_it_back(client, gitlab_url):
    auth = authenticator(client, gitlab_url, cache_ttl=0.3, outage_grace=60.0)
    assert auth.identify(request(bearer(BOB_TOKEN))).username == "bob"
    key = gitlab_cache_key("token", _digest(BOB_TOKEN))
    assert client.exists(key)
    control(gitlab_url, "/_gitlab/tokens/revoke", {"token": BOB_TOKEN})
    wait_for(lambda: _refused(auth, bearer(BOB_TOKEN)), timeout=5, message="the revocation once stale")
    assert not client.exists(key)  # gone at once, not left to serve an outage
    client.delete(gitlab_rejected_key("token", _digest(BOB_TOKEN)))  # past the 10 s marker
    control(gitlab_url, "/_gitlab/fault", {"status": 503})
    with pytest.raises(GitLabUnavailable):  # 503 during the outage: never bob again
        auth.identify(request(bearer(BOB_TOKEN)))


def test_a_user_blocked_after_caching_is_refused_once_stale_and_then_stays_refused(client, gitlab_url):
    auth = authenticator(client, gitlab_url, cache_ttl=0.3)
    assert auth.identify(request(bearer(DAVE_TOKEN))).username == "dave"
    control(gitlab_url, "/_gitlab/users/5/state", {"state": "blocked"})
    wait_for(lambda: _refused(auth, bearer(DAVE_TOKEN), UserBlocked), timeout=5, message="the block once stale")
    client.delete(gitlab_rejected_key("token", _digest(DAVE_TOKEN)))
    control(gitlab_url, "/_gitlab/fault", {"status": 503})
    with pytest.raises(GitLabUnavailable):
        auth.identify(request(bearer(DAVE_TOKEN)))


def test_an_outage_still_serves_a_stale_identity_gitlab_never_refused(client, gitlab_url):
    auth = authenticator(client, gitlab_url, cache_ttl=0.2, outage_grace=60.0)
    assert auth.identify(request(bearer(DEMO_TOKEN, "100"))).project_id == "100"
    time.sleep(0.3)  # stale: the passing of time is the point
    control(gitlab_url, "/_gitlab/fault", {"status": 503})
    assert auth.identify(request(bearer(DEMO_TOKEN, "100"))).project_id == "100"


# -- projects ----------------------------------------------------------------------------

@pytest.mark.parametrize("ref", [".", "..", "alice/scratch:lock", "x" * 300, "a//b", "101:done"])
def test_a_bad_reference_is_400_before_any_gitlab_call(client, gitlab_url, ref):
    with pytest.raises(InvalidRequest) as refused:
        authenticator(client, gitlab_url).identify(request(bearer(DEMO_TOKEN, ref)))
    assert refused.value.param == "X-Gitlab-Project-Id"
    assert calls(gitlab_url) == []


def test_a_non_member_and_a_missing_project_get_one_answer_naming_only_the_reference(client, gitlab_url):
    auth = authenticator(client, gitlab_url)
    answers = {}
    for ref in ("200", "999", "other/secret", "nope/nothing"):
        req = request(bearer(DAVE_TOKEN if ref == "999" else DEMO_TOKEN, ref))
        with pytest.raises(ProjectNotFound) as refused:
            auth.identify(req)
        assert refused.value.status == 403 and refused.value.code == "project_not_found"
        answers[ref] = refused.value.message.replace(f"'{ref}'", "'<ref>'")
        assert "secret" not in refused.value.message or ref == "other/secret"
        assert req.context.identity.user_id in ("2", "5")  # the refusal's access record names the caller
    assert len(set(answers.values())) == 1, answers


def test_a_member_below_the_minimum_keeps_insufficient_access(client, gitlab_url):
    req = request(bearer(BOB_TOKEN, "100"))
    with pytest.raises(InsufficientAccess) as refused:
        authenticator(client, gitlab_url).identify(req)
    assert "Reporter" in refused.value.message and "Developer" in refused.value.message
    assert req.context.identity == Identity("3", "bob", credential="token")


def test_a_public_project_does_not_make_a_member(client, gitlab_url):
    with pytest.raises(ProjectNotFound):
        authenticator(client, gitlab_url).identify(request(bearer(DAVE_TOKEN, "acme/handbook")))


def test_a_job_token_acts_for_its_own_project_only(client, gitlab_url):
    auth = authenticator(client, gitlab_url)
    assert auth.identify(request({"JOB-TOKEN": ALICE_JOB_TOKEN, "X-Gitlab-Project-Id": "0100"})).project_id == "100"
    with pytest.raises(ProjectMismatch):
        auth.identify(request({"JOB-TOKEN": ERIN_JOB_TOKEN, "X-Gitlab-Project-Id": "100"}))


def test_a_missing_project_is_cached_for_a_minute_only(client, gitlab_url):
    auth = authenticator(client, gitlab_url)
    with pytest.raises(ProjectNotFound):
        auth.identify(request(bearer(DEMO_TOKEN, "made/up")))
    assert 0 < client.ttl(gitlab_cache_key("project", "made/up")) <= 60


# -- the call budget ---------------------------------------------------------------------

def test_unknown_tokens_over_the_budget_get_503_and_cached_callers_do_not_notice(client, gitlab_url):
    auth = authenticator(client, gitlab_url, max_calls_per_second=3)
    assert auth.identify(request(bearer(DEMO_TOKEN, "100"))).project_id == "100"  # cached: no more calls
    before = len(calls(gitlab_url))

    def unknown(_) -> int:
        try:
            auth.identify(request(bearer("glpat-" + secrets.token_hex(8))))
        except Unauthorized:
            return 401
        except GitLabUnavailable as unavailable:
            assert unavailable.retry_after == 1
            return 503
        return 200

    began = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        burst = pool.map(unknown, range(16))
        cached = [auth.identify(request(bearer(DEMO_TOKEN, "100"))).username for _ in range(20)]
        outcomes = list(burst)
    elapsed = time.monotonic() - began
    made = len(calls(gitlab_url)) - before
    assert cached == ["alice"] * 20
    assert made == outcomes.count(401) and outcomes.count(503) == 16 - made
    assert 3 <= made <= 3 * (elapsed + 1)  # 3 at once, 3 more within the second they may wait


def test_a_stale_identity_keeps_serving_when_the_budget_refuses_its_refresh(client, gitlab_url):
    auth = authenticator(client, gitlab_url, cache_ttl=0.2)
    assert auth.identify(request(bearer(DAVE_TOKEN))).username == "dave"
    time.sleep(0.3)  # stale now
    auth.gitlab.budget = CallBudget(1, max_wait=0.0)
    assert auth.gitlab.budget.take()  # this second's one call: the refresh below is over the budget
    assert auth.identify(request(bearer(DAVE_TOKEN))).username == "dave"
    assert len(calls(gitlab_url)) == 1


def _digest(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def _refused(auth: Authenticator, headers: dict, error: type = Unauthorized) -> bool:
    try:
        auth.identify(request(headers))
    except error:
        return True
    return False
