"""Tests for the GitLab stand-in's identity endpoints, over real HTTP on loopback: /user, token kinds,
personal access tokens, CI job tokens, /version, blocked users, scopes and revoked tokens.

Projects, memberships and groups: test_sandbox_gitlab_access.py. Faults, call log, transport and the
command line: test_sandbox_gitlab_controls.py.
"""

from __future__ import annotations

import pytest
import requests

from sandbox.gitlab_data import (
    ADMIN_TOKEN,
    ALICE_JOB_TOKEN,
    BOB_TOKEN,
    CAROL_JOB_TOKEN,
    CAROL_TOKEN,
    DAVE_TOKEN,
    DEMO_OAUTH_TOKEN,
    DEMO_TOKEN,
    ERIN_JOB_TOKEN,
    ERIN_TOKEN,
    PROJECT_BOT_TOKEN,
    REPO_ONLY_TOKEN,
)
from tests.unit.gitlab_fixtures import get, ok

USER_KEYS = {"id", "username", "name", "state", "locked", "avatar_url", "web_url", "created_at", "bot"}


# --- /user and token kinds ---

def test_user_shape_for_demo_user_without_is_admin(gitlab_url):
    user = ok(gitlab_url, "/api/v4/user", DEMO_TOKEN)
    assert set(user) == USER_KEYS
    assert user["id"] == 2 and user["username"] == "alice" and user["state"] == "active"
    assert user["locked"] is False and user["avatar_url"] is None and user["bot"] is False
    assert user["web_url"] == f"{gitlab_url}/alice" and user["created_at"].endswith("Z")


def test_admin_sees_is_admin_true(gitlab_url):
    user = ok(gitlab_url, "/api/v4/user", ADMIN_TOKEN, how="bearer")
    assert user["id"] == 1 and user["username"] == "root"
    assert set(user) == USER_KEYS | {"is_admin"} and user["is_admin"] is True


@pytest.mark.parametrize("token,user_id", [(DEMO_OAUTH_TOKEN, 2), (BOB_TOKEN, 3), (DAVE_TOKEN, 5),
                                           (ERIN_TOKEN, 6), (PROJECT_BOT_TOKEN, 7)])
@pytest.mark.parametrize("how", ["private", "bearer"])
def test_non_admin_tokens_identify_their_user_without_is_admin(gitlab_url, token, user_id, how):
    user = ok(gitlab_url, "/api/v4/user", token, how)
    assert user["id"] == user_id and "is_admin" not in user


def test_project_access_token_is_a_bot_maintaining_project_100_only(gitlab_url):
    user = ok(gitlab_url, "/api/v4/user", PROJECT_BOT_TOKEN)
    assert (user["username"], user["bot"], user["state"]) == ("project_100_bot", True, "active")
    assert ok(gitlab_url, "/api/v4/personal_access_tokens/self", PROJECT_BOT_TOKEN)["user_id"] == 7
    assert ok(gitlab_url, "/api/v4/projects/100/members/all/7", PROJECT_BOT_TOKEN)["access_level"] == 40
    assert get(gitlab_url, "/api/v4/projects/101", PROJECT_BOT_TOKEN).status_code == 404
    assert ok(gitlab_url, "/api/v4/projects/102", PROJECT_BOT_TOKEN)["visibility"] == "public"


def test_personal_access_token_self_shape(gitlab_url):
    token = ok(gitlab_url, "/api/v4/personal_access_tokens/self", DEMO_TOKEN, how="bearer")
    assert set(token) == {"id", "name", "revoked", "created_at", "scopes", "user_id", "active", "expires_at"}
    assert token["user_id"] == 2 and token["scopes"] == ["api"]
    assert token["revoked"] is False and token["active"] is True and token["expires_at"] is None
    assert ok(gitlab_url, "/api/v4/personal_access_tokens/self", ADMIN_TOKEN)["id"] != token["id"]


def test_personal_access_token_self_rejects_an_oauth_token(gitlab_url):
    response = get(gitlab_url, "/api/v4/personal_access_tokens/self", DEMO_OAUTH_TOKEN, how="bearer")
    assert response.status_code == 400 and "personal access token" in response.json()["message"]


@pytest.mark.parametrize("path", ["/api/v4/user", "/api/v4/version", "/api/v4/projects/102", "/api/v4/groups/10",
                                  "/api/v4/personal_access_tokens/self", "/api/v4/projects/102/members/all/2"])
@pytest.mark.parametrize("token", [None, "glpat-nope", ALICE_JOB_TOKEN])
def test_missing_unknown_or_job_token_is_401(gitlab_url, path, token):
    response = get(gitlab_url, path, token)
    assert response.status_code == 401 and response.json() == {"message": "401 Unauthorized"}


def test_job_token_answers_the_job(gitlab_url):
    job = ok(gitlab_url, "/api/v4/job", ALICE_JOB_TOKEN, how="job")
    assert set(job) == {"id", "status", "stage", "name", "ref", "user", "pipeline"}
    assert (job["id"], job["status"], job["stage"], job["name"], job["ref"]) == (9001, "running", "test", "ai-job",
                                                                                 "main")
    assert job["user"] == {"id": 2, "username": "alice", "name": job["user"]["name"], "state": "active"}
    pipeline = job["pipeline"]
    assert set(pipeline) == {"id", "project_id", "ref", "sha", "status"}
    assert pipeline["project_id"] == 100 and pipeline["status"] == "running" and len(pipeline["sha"]) == 40
    erin = ok(gitlab_url, "/api/v4/job", ERIN_JOB_TOKEN, how="job")
    assert (erin["id"], erin["user"]["id"], erin["pipeline"]["project_id"]) == (9002, 6, 101)


@pytest.mark.parametrize("token,how", [("glcbt-nope", "job"), (DEMO_TOKEN, "job"), (ALICE_JOB_TOKEN, "private"),
                                       (DEMO_TOKEN, "private"), (None, "job")])
def test_job_endpoint_needs_a_known_job_token_header(gitlab_url, token, how):
    response = get(gitlab_url, "/api/v4/job", token, how)
    assert response.status_code == 401 and response.json() == {"message": "401 Unauthorized"}


def test_version(gitlab_url):
    assert ok(gitlab_url, "/api/v4/version", BOB_TOKEN) == {"version": "17.5.0-standin", "revision": "standin"}


# --- blocked users ---

BLOCKED = {"message": "403 Forbidden - Your account has been blocked."}  # GitLab's API guard, for every endpoint


@pytest.mark.parametrize("path", ["/api/v4/user", "/api/v4/version", "/api/v4/projects/100", "/api/v4/projects",
                                  "/api/v4/groups/10", "/api/v4/personal_access_tokens/self",
                                  "/api/v4/projects/100/members/all/4"])
@pytest.mark.parametrize("how", ["private", "bearer"])
def test_a_blocked_user_is_refused_by_every_endpoint_user_included(gitlab_url, path, how):
    response = get(gitlab_url, path, CAROL_TOKEN, how)
    assert response.status_code == 403 and response.json() == BLOCKED


def test_a_blocked_user_s_job_token_is_refused_with_the_same_message(gitlab_url):
    job = get(gitlab_url, "/api/v4/job", CAROL_JOB_TOKEN, how="job")
    assert job.status_code == 403 and job.json() == BLOCKED


def test_a_blocked_member_still_shows_in_memberships_read_by_others(gitlab_url):
    member = ok(gitlab_url, "/api/v4/projects/100/members/all/4")
    assert member["state"] == "blocked" and member["access_level"] == 30


def test_state_changes_at_run_time_and_reset_restores_them(gitlab_url):
    blocked = requests.post(f"{gitlab_url}/_gitlab/users/2/state", json={"state": "blocked"}, timeout=5)
    assert blocked.json() == {"id": 2, "state": "blocked"}
    for response in (get(gitlab_url, "/api/v4/user", DEMO_OAUTH_TOKEN, how="bearer"),
                     get(gitlab_url, "/api/v4/projects/100", DEMO_TOKEN),
                     get(gitlab_url, "/api/v4/job", ALICE_JOB_TOKEN, how="job")):
        assert response.status_code == 403 and response.json() == BLOCKED
    assert ok(gitlab_url, "/api/v4/projects/100/members/all/2")["state"] == "blocked"
    requests.post(f"{gitlab_url}/_gitlab/users/4/state", json={"state": "active"}, timeout=5)
    assert ok(gitlab_url, "/api/v4/projects/100", CAROL_TOKEN)["id"] == 100
    assert ok(gitlab_url, "/api/v4/user", CAROL_TOKEN)["state"] == "active"
    requests.post(f"{gitlab_url}/_gitlab/reset", timeout=5)
    assert ok(gitlab_url, "/api/v4/user", DEMO_TOKEN)["state"] == "active"
    assert get(gitlab_url, "/api/v4/user", CAROL_TOKEN).json() == BLOCKED


# --- scopes ---

SCOPE_REFUSAL = {"error": "insufficient_scope",
                 "error_description": "The request requires higher privileges than provided by the access token."}


@pytest.mark.parametrize("path,scopes", [
    ("/api/v4/user", "read_user api read_api"),
    ("/api/v4/version", "read_user api read_api"),
    ("/api/v4/projects/100", "api read_api"),
    ("/api/v4/projects", "api read_api"),
    ("/api/v4/groups/10", "api read_api"),
    ("/api/v4/projects/100/members/all/2", "api read_api"),
])
def test_a_token_without_an_accepted_scope_is_refused_naming_the_scopes(gitlab_url, path, scopes):
    response = get(gitlab_url, path, REPO_ONLY_TOKEN, how="bearer")
    assert response.status_code == 403 and response.json() == {**SCOPE_REFUSAL, "scope": scopes}


def test_any_scope_may_read_its_own_token(gitlab_url):
    token = ok(gitlab_url, "/api/v4/personal_access_tokens/self", REPO_ONLY_TOKEN)
    assert token["scopes"] == ["read_repository"] and token["user_id"] == 2


def test_the_scope_is_checked_before_the_user_s_state(gitlab_url):
    requests.post(f"{gitlab_url}/_gitlab/users/2/state", json={"state": "blocked"}, timeout=5)
    assert get(gitlab_url, "/api/v4/user", REPO_ONLY_TOKEN).json()["error"] == "insufficient_scope"


# --- revoked tokens ---

def test_a_revoked_token_is_401_with_gitlab_s_invalid_token_answer(gitlab_url):
    assert ok(gitlab_url, "/api/v4/user", BOB_TOKEN)["id"] == 3
    revoked = requests.post(f"{gitlab_url}/_gitlab/tokens/revoke", json={"token": BOB_TOKEN}, timeout=5)
    assert revoked.status_code == 200 and BOB_TOKEN not in revoked.text
    for how in ("private", "bearer"):
        response = get(gitlab_url, "/api/v4/user", BOB_TOKEN, how)
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_token",
                                   "error_description": "Token was revoked. You have to re-authorize from the user."}
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert ok(gitlab_url, "/api/v4/user", DAVE_TOKEN)["id"] == 5  # others unaffected
    requests.post(f"{gitlab_url}/_gitlab/reset", timeout=5)
    assert ok(gitlab_url, "/api/v4/user", BOB_TOKEN)["id"] == 3


def test_a_revoked_job_token_is_401(gitlab_url):
    requests.post(f"{gitlab_url}/_gitlab/tokens/revoke", json={"token": ALICE_JOB_TOKEN}, timeout=5)
    response = get(gitlab_url, "/api/v4/job", ALICE_JOB_TOKEN, how="job")
    assert response.status_code == 401 and response.json() == {"message": "401 Unauthorized"}


@pytest.mark.parametrize("body", [{}, {"token": ""}, {"token": 7}, ["x"]])
def test_bad_revocations_are_refused(gitlab_url, body):
    assert requests.post(f"{gitlab_url}/_gitlab/tokens/revoke", json=body, timeout=5).status_code == 400


@pytest.mark.parametrize("path,body,status", [
    ("/_gitlab/users/99/state", {"state": "blocked"}, 404),
    ("/_gitlab/users/2/state", {"state": "deleted"}, 400),
    ("/_gitlab/users/2/state", ["blocked"], 400),
])
def test_bad_state_changes_are_refused(gitlab_url, path, body, status):
    assert requests.post(f"{gitlab_url}{path}", json=body, timeout=5).status_code == status
    assert ok(gitlab_url, "/api/v4/user", DEMO_TOKEN)["state"] == "active"
