"""Tests for the GitLab stand-in, over real HTTP on loopback."""

from __future__ import annotations

import hashlib
import http.client
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from sandbox import gitlab
from sandbox.gitlab import (
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
    serve_in_thread,
)

ROOT = Path(__file__).resolve().parents[2]
USER_KEYS = {"id", "username", "name", "state", "locked", "avatar_url", "web_url", "created_at", "bot"}
ALL_TOKENS = [ADMIN_TOKEN, DEMO_TOKEN, DEMO_OAUTH_TOKEN, BOB_TOKEN, CAROL_TOKEN, DAVE_TOKEN, ERIN_TOKEN,
              PROJECT_BOT_TOKEN, ALICE_JOB_TOKEN, ERIN_JOB_TOKEN, CAROL_JOB_TOKEN]


@pytest.fixture(scope="module")
def server():
    srv, base = serve_in_thread()
    yield srv, base
    srv.stop()


@pytest.fixture
def base(server):
    srv, url = server
    srv.reset()
    yield url
    srv.reset()


def get(base, path, token=None, how="private", timeout=10):
    headers = {}
    if token is not None:
        name, value = {"private": ("PRIVATE-TOKEN", token), "bearer": ("Authorization", f"Bearer {token}"),
                       "job": ("JOB-TOKEN", token)}[how]
        headers[name] = value
    return requests.get(f"{base}{path}", headers=headers, timeout=timeout)


def ok(base, path, token=ADMIN_TOKEN, how="private"):
    response = get(base, path, token, how)
    assert response.status_code == 200, response.text
    return response.json()


def fault(base, **spec):
    response = requests.post(f"{base}/_gitlab/fault", json=spec, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def calls(base):
    return requests.get(f"{base}/_gitlab/calls", timeout=5).json()["calls"]


def sha16(token):
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# --- /user and token kinds ---

def test_user_shape_for_demo_user_without_is_admin(base):
    user = ok(base, "/api/v4/user", DEMO_TOKEN)
    assert set(user) == USER_KEYS
    assert user["id"] == 2 and user["username"] == "alice" and user["state"] == "active"
    assert user["locked"] is False and user["avatar_url"] is None and user["bot"] is False
    assert user["web_url"] == f"{base}/alice" and user["created_at"].endswith("Z")


def test_admin_sees_is_admin_true(base):
    user = ok(base, "/api/v4/user", ADMIN_TOKEN, how="bearer")
    assert user["id"] == 1 and user["username"] == "root"
    assert set(user) == USER_KEYS | {"is_admin"} and user["is_admin"] is True


@pytest.mark.parametrize("token,user_id", [(DEMO_OAUTH_TOKEN, 2), (BOB_TOKEN, 3), (DAVE_TOKEN, 5),
                                           (ERIN_TOKEN, 6), (PROJECT_BOT_TOKEN, 7)])
@pytest.mark.parametrize("how", ["private", "bearer"])
def test_non_admin_tokens_identify_their_user_without_is_admin(base, token, user_id, how):
    user = ok(base, "/api/v4/user", token, how)
    assert user["id"] == user_id and "is_admin" not in user


def test_project_access_token_is_a_bot_maintaining_project_100_only(base):
    user = ok(base, "/api/v4/user", PROJECT_BOT_TOKEN)
    assert (user["username"], user["bot"], user["state"]) == ("project_100_bot", True, "active")
    assert ok(base, "/api/v4/personal_access_tokens/self", PROJECT_BOT_TOKEN)["user_id"] == 7
    assert ok(base, "/api/v4/projects/100/members/all/7", PROJECT_BOT_TOKEN)["access_level"] == 40
    assert get(base, "/api/v4/projects/101", PROJECT_BOT_TOKEN).status_code == 404
    assert ok(base, "/api/v4/projects/102", PROJECT_BOT_TOKEN)["visibility"] == "public"


def test_personal_access_token_self_shape(base):
    token = ok(base, "/api/v4/personal_access_tokens/self", DEMO_TOKEN, how="bearer")
    assert set(token) == {"id", "name", "revoked", "created_at", "scopes", "user_id", "active", "expires_at"}
    assert token["user_id"] == 2 and token["scopes"] == ["api"]
    assert token["revoked"] is False and token["active"] is True and token["expires_at"] is None
    assert ok(base, "/api/v4/personal_access_tokens/self", ADMIN_TOKEN)["id"] != token["id"]


def test_personal_access_token_self_rejects_an_oauth_token(base):
    response = get(base, "/api/v4/personal_access_tokens/self", DEMO_OAUTH_TOKEN, how="bearer")
    assert response.status_code == 400 and "personal access token" in response.json()["message"]


@pytest.mark.parametrize("path", ["/api/v4/user", "/api/v4/version", "/api/v4/projects/102", "/api/v4/groups/10",
                                  "/api/v4/personal_access_tokens/self", "/api/v4/projects/102/members/all/2"])
@pytest.mark.parametrize("token", [None, "glpat-nope", ALICE_JOB_TOKEN])
def test_missing_unknown_or_job_token_is_401(base, path, token):
    response = get(base, path, token)
    assert response.status_code == 401 and response.json() == {"message": "401 Unauthorized"}


def test_job_token_answers_the_job(base):
    job = ok(base, "/api/v4/job", ALICE_JOB_TOKEN, how="job")
    assert set(job) == {"id", "status", "stage", "name", "ref", "user", "pipeline"}
    assert (job["id"], job["status"], job["stage"], job["name"], job["ref"]) == (9001, "running", "test", "ai-job",
                                                                                 "main")
    assert job["user"] == {"id": 2, "username": "alice", "name": job["user"]["name"], "state": "active"}
    pipeline = job["pipeline"]
    assert set(pipeline) == {"id", "project_id", "ref", "sha", "status"}
    assert pipeline["project_id"] == 100 and pipeline["status"] == "running" and len(pipeline["sha"]) == 40
    erin = ok(base, "/api/v4/job", ERIN_JOB_TOKEN, how="job")
    assert (erin["id"], erin["user"]["id"], erin["pipeline"]["project_id"]) == (9002, 6, 101)


@pytest.mark.parametrize("token,how", [("glcbt-nope", "job"), (DEMO_TOKEN, "job"), (ALICE_JOB_TOKEN, "private"),
                                       (DEMO_TOKEN, "private"), (None, "job")])
def test_job_endpoint_needs_a_known_job_token_header(base, token, how):
    response = get(base, "/api/v4/job", token, how)
    assert response.status_code == 401 and response.json() == {"message": "401 Unauthorized"}


def test_version(base):
    assert ok(base, "/api/v4/version", BOB_TOKEN) == {"version": "17.5.0-standin", "revision": "standin"}


# --- projects and memberships ---

def test_project_shape_by_id_encoded_and_plain_path(base):
    expected = {
        "id": 100, "name": "api", "path": "api", "path_with_namespace": "acme/platform/api", "visibility": "private",
        "namespace": {"id": 11, "name": "platform", "path": "platform", "kind": "group",
                      "full_path": "acme/platform", "parent_id": 10},
    }
    assert ok(base, "/api/v4/projects/100", DEMO_TOKEN) == expected
    assert ok(base, "/api/v4/projects/acme%2Fplatform%2Fapi", DEMO_TOKEN) == expected
    assert ok(base, "/api/v4/projects/acme/platform/api", DEMO_TOKEN) == expected


def test_user_namespace_project(base):
    project = ok(base, "/api/v4/projects/alice%2Fscratch", DEMO_TOKEN)
    assert project["id"] == 300 and project["visibility"] == "private"
    assert project["namespace"] == {"id": 50, "name": "alice", "path": "alice", "kind": "user", "full_path": "alice",
                                    "parent_id": None}
    assert ok(base, "/api/v4/projects/300/members/all/2", DEMO_TOKEN)["access_level"] == 50
    assert get(base, "/api/v4/projects/300", BOB_TOKEN).status_code == 404


@pytest.mark.parametrize("project", ["100", "101", "102", "acme%2Fplatform%2Fml%2Fmodels"])
def test_alice_inherits_developer_from_group_10(base, project):
    member = ok(base, f"/api/v4/projects/{project}/members/all/2", DEMO_TOKEN)
    assert member == {"id": 2, "username": "alice", "name": member["name"], "state": "active", "access_level": 30}


def test_effective_level_is_the_highest_of_direct_and_inherited(monkeypatch):
    monkeypatch.setitem(gitlab.PROJECT_MEMBERS[101], 2, gitlab.REPORTER)
    assert gitlab.project_level(101, 2) == 30
    monkeypatch.setitem(gitlab.PROJECT_MEMBERS[101], 2, gitlab.MAINTAINER)
    assert gitlab.project_level(101, 2) == 40


def test_direct_membership_bob_reporter_of_100_only(base):
    assert ok(base, "/api/v4/projects/100/members/all/3", BOB_TOKEN)["access_level"] == 20
    assert ok(base, "/api/v4/projects/100/members/all/3", ADMIN_TOKEN)["username"] == "bob"
    response = get(base, "/api/v4/projects/101", BOB_TOKEN)
    assert response.status_code == 404 and response.json() == {"message": "404 Project Not Found"}


def test_dave_maintains_project_200_through_group_20(base):
    assert ok(base, "/api/v4/projects/other%2Fsecret/members/all/5", DAVE_TOKEN)["access_level"] == 40
    assert get(base, "/api/v4/projects/200", DEMO_TOKEN).status_code == 404


def test_public_project_is_visible_but_does_not_make_members(base):
    assert ok(base, "/api/v4/projects/102", BOB_TOKEN)["path_with_namespace"] == "acme/handbook"
    response = get(base, "/api/v4/projects/102/members/all/3", BOB_TOKEN)
    assert response.status_code == 404 and response.json() == {"message": "404 Not found"}
    assert ok(base, "/api/v4/projects/102/members/all/2", BOB_TOKEN)["access_level"] == 30


def test_erin_cannot_see_project_100_but_root_can(base):
    response = get(base, "/api/v4/projects/100", ERIN_TOKEN)
    assert response.status_code == 404 and response.json() == {"message": "404 Project Not Found"}
    members = get(base, "/api/v4/projects/100/members/all/3", ERIN_TOKEN)
    assert members.status_code == 404 and members.json() == {"message": "404 Project Not Found"}
    assert ok(base, "/api/v4/projects/100", ADMIN_TOKEN)["id"] == 100
    assert ok(base, "/api/v4/projects/101/members/all/6", ERIN_TOKEN)["access_level"] == 30


@pytest.mark.parametrize("path,message", [
    ("/api/v4/projects/100/members/all/1", "404 Not found"),  # root is a member of nothing
    ("/api/v4/projects/100/members/all/999", "404 Not found"),
    ("/api/v4/projects/999", "404 Project Not Found"),
    ("/api/v4/projects/nope%2Fnothing", "404 Project Not Found"),
    ("/api/v4/groups/999", "404 Group Not Found"),
    ("/api/v4/projects/100/members/all/abc", "404 Not Found"),
    ("/api/v4/nothing", "404 Not Found"),
    ("/nothing", "404 Not Found"),
])
def test_not_found_messages(base, path, message):
    response = get(base, path, ADMIN_TOKEN)
    assert response.status_code == 404 and response.json() == {"message": message}


def test_wrong_method_on_an_api_route(base):
    response = requests.post(f"{base}/api/v4/user", headers={"PRIVATE-TOKEN": DEMO_TOKEN}, timeout=5)
    assert response.status_code == 405


# --- groups ---

def test_group_ancestry_walks_to_the_top(base):
    seen, ref = [], "acme%2Fplatform%2Fml"
    while ref is not None:
        group = ok(base, f"/api/v4/groups/{ref}")
        assert set(group) == {"id", "name", "path", "full_path", "parent_id", "visibility"}
        assert group["visibility"] == "private"
        seen.append((group["id"], group["full_path"], group["parent_id"]))
        ref = group["parent_id"]
    assert seen == [(12, "acme/platform/ml", 11), (11, "acme/platform", 10), (10, "acme", None)]
    assert ok(base, "/api/v4/groups/acme/platform")["id"] == 11


@pytest.mark.parametrize("token,visible", [
    (ADMIN_TOKEN, {10, 11, 12, 20}),
    (DEMO_TOKEN, {10, 11, 12}),  # member of 10, inherited below
    (ERIN_TOKEN, {10, 11, 12}),  # member of project 101, below all three
    (BOB_TOKEN, {10, 11}),  # member of project 100 in group 11
    (DAVE_TOKEN, {20}),
    (PROJECT_BOT_TOKEN, {10, 11}),
])
def test_group_visibility(base, token, visible):
    for group_id in (10, 11, 12, 20):
        response = get(base, f"/api/v4/groups/{group_id}", token)
        if group_id in visible:
            assert response.status_code == 200 and response.json()["id"] == group_id
        else:
            assert response.status_code == 404 and response.json() == {"message": "404 Group Not Found"}


# --- blocked users ---

def test_blocked_user_answers_user_but_is_forbidden_elsewhere(base):
    user = ok(base, "/api/v4/user", CAROL_TOKEN)
    assert user["id"] == 4 and user["state"] == "blocked"
    for path in ("/api/v4/version", "/api/v4/projects/100", "/api/v4/personal_access_tokens/self"):
        response = get(base, path, CAROL_TOKEN)
        assert response.status_code == 403 and response.json() == {"message": "403 Forbidden"}
    job = get(base, "/api/v4/job", CAROL_JOB_TOKEN, how="job")
    assert job.status_code == 403 and job.json() == {"message": "403 Forbidden"}
    member = ok(base, "/api/v4/projects/100/members/all/4")
    assert member["state"] == "blocked" and member["access_level"] == 30


def test_state_changes_at_run_time_and_reset_restores_them(base):
    blocked = requests.post(f"{base}/_gitlab/users/2/state", json={"state": "blocked"}, timeout=5)
    assert blocked.json() == {"id": 2, "state": "blocked"}
    assert ok(base, "/api/v4/user", DEMO_OAUTH_TOKEN, how="bearer")["state"] == "blocked"
    assert get(base, "/api/v4/projects/100", DEMO_TOKEN).status_code == 403
    assert get(base, "/api/v4/job", ALICE_JOB_TOKEN, how="job").status_code == 403
    assert ok(base, "/api/v4/projects/100/members/all/2")["state"] == "blocked"
    requests.post(f"{base}/_gitlab/users/4/state", json={"state": "active"}, timeout=5)
    assert ok(base, "/api/v4/projects/100", CAROL_TOKEN)["id"] == 100
    requests.post(f"{base}/_gitlab/reset", timeout=5)
    assert ok(base, "/api/v4/user", DEMO_TOKEN)["state"] == "active"
    assert ok(base, "/api/v4/user", CAROL_TOKEN)["state"] == "blocked"


@pytest.mark.parametrize("path,body,status", [
    ("/_gitlab/users/99/state", {"state": "blocked"}, 404),
    ("/_gitlab/users/2/state", {"state": "deleted"}, 400),
    ("/_gitlab/users/2/state", ["blocked"], 400),
])
def test_bad_state_changes_are_refused(base, path, body, status):
    assert requests.post(f"{base}{path}", json=body, timeout=5).status_code == status
    assert ok(base, "/api/v4/user", DEMO_TOKEN)["state"] == "active"


# --- faults ---

def test_fault_status_with_times_then_recovers(base):
    fault(base, status=503, times=2)
    for _ in range(2):
        response = get(base, "/api/v4/user", DEMO_TOKEN)
        assert response.status_code == 503 and response.json() == {"message": "503 Service Unavailable"}
    assert get(base, "/api/v4/user", DEMO_TOKEN).status_code == 200
    assert requests.get(f"{base}/_gitlab/fault", timeout=5).json() == {"fault": None}


def test_fault_without_times_persists_until_deleted(base):
    fault(base, status=500)
    assert [get(base, "/api/v4/version", BOB_TOKEN).status_code for _ in range(3)] == [500] * 3
    assert requests.delete(f"{base}/_gitlab/fault", timeout=5).json() == {"fault": None}
    assert get(base, "/api/v4/version", BOB_TOKEN).status_code == 200


def test_fault_applies_before_auth_and_sends_retry_after(base):
    fault(base, status=429, retry_after=7, times=1)
    response = get(base, "/api/v4/user")  # no token: the fault still wins
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert get(base, "/api/v4/user").status_code == 401


def test_fault_delay_only_delays_then_answers(base):
    fault(base, delay_ms=300, times=1)
    started = time.monotonic()
    response = get(base, "/api/v4/user", DEMO_TOKEN)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["id"] == 2
    assert 0.3 <= elapsed < 5.0


def test_fault_close_drops_the_connection(base):
    fault(base, close=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        get(base, "/api/v4/user", DEMO_TOKEN)
    assert get(base, "/api/v4/user", DEMO_TOKEN).status_code == 200
    assert len(calls(base)) == 2  # the dropped call is still logged


def test_fault_path_filter(base):
    fault(base, status=503, paths=["/api/v4/user", "/api/v4/projects/1"])
    assert get(base, "/api/v4/user", DEMO_TOKEN).status_code == 503
    assert get(base, "/api/v4/projects/100", DEMO_TOKEN).status_code == 503  # prefix match
    assert get(base, "/api/v4/version", DEMO_TOKEN).status_code == 200
    assert get(base, "/api/v4/groups/10", DEMO_TOKEN).status_code == 200


def test_new_fault_replaces_the_old_one(base):
    fault(base, status=500)
    fault(base, status=502, times=1)
    assert get(base, "/api/v4/user", DEMO_TOKEN).status_code == 502
    assert get(base, "/api/v4/user", DEMO_TOKEN).status_code == 200


def test_controls_are_never_faulted(base):
    fault(base, close=True, paths=["/"])
    assert requests.get(f"{base}/_gitlab/calls", timeout=5).status_code == 200
    assert requests.get(f"{base}/_gitlab/fault", timeout=5).json()["fault"]["close"] is True
    assert requests.post(f"{base}/_gitlab/reset", timeout=5).status_code == 200
    assert get(base, "/api/v4/user", DEMO_TOKEN).status_code == 200


def test_fault_times_is_exact_under_concurrency(base):
    fault(base, status=503, times=3)
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(lambda _: get(base, "/api/v4/version", BOB_TOKEN).status_code, range(10)))
    assert sorted(codes) == [200] * 7 + [503] * 3


@pytest.mark.parametrize("body", [{}, {"status": 200}, {"status": 700}, {"status": "503"}, {"status": 503, "times": 0},
                                  {"delay_ms": -1}, {"close": "yes"}, {"status": 503, "paths": "/api"},
                                  {"status": 503, "bogus": 1}, [503], {"status": True}])
def test_bad_fault_bodies_are_refused(base, body):
    response = requests.post(f"{base}/_gitlab/fault", json=body, timeout=5)
    assert response.status_code == 400 and response.json()["message"].startswith("400")
    assert requests.get(f"{base}/_gitlab/fault", timeout=5).json() == {"fault": None}


# --- call log ---

def test_call_log_records_hashed_tokens_in_order_and_never_raw_ones(base):
    get(base, "/api/v4/user", DEMO_TOKEN)
    get(base, "/api/v4/user", DEMO_OAUTH_TOKEN, how="bearer")
    get(base, "/api/v4/job", ALICE_JOB_TOKEN, how="job")
    get(base, "/api/v4/version")
    get(base, "/api/v4/projects/acme%2Fhandbook", ADMIN_TOKEN)
    requests.get(f"{base}/_gitlab/fault", timeout=5)  # controls are not API calls
    entries = calls(base)
    assert [(c["method"], c["path"], c["auth"], c["token_sha256"]) for c in entries] == [
        ("GET", "/api/v4/user", "private", sha16(DEMO_TOKEN)),
        ("GET", "/api/v4/user", "bearer", sha16(DEMO_OAUTH_TOKEN)),
        ("GET", "/api/v4/job", "job", sha16(ALICE_JOB_TOKEN)),
        ("GET", "/api/v4/version", None, None),
        ("GET", "/api/v4/projects/acme%2Fhandbook", "private", sha16(ADMIN_TOKEN)),
    ]
    times = [c["time"] for c in entries]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 60
    text = requests.get(f"{base}/_gitlab/calls", timeout=5).text
    assert not any(token in text for token in ALL_TOKENS)


def test_call_log_keeps_the_last_1000(base):
    with requests.Session() as session:
        for i in range(1003):
            session.get(f"{base}/api/v4/projects/{i}", timeout=5)
    entries = calls(base)
    assert len(entries) == 1000
    assert entries[0]["path"] == "/api/v4/projects/3" and entries[-1]["path"] == "/api/v4/projects/1002"


def test_reset_clears_calls_and_fault(base):
    get(base, "/api/v4/user", DEMO_TOKEN)
    fault(base, status=500)
    requests.post(f"{base}/_gitlab/reset", timeout=5)
    assert calls(base) == []
    assert get(base, "/api/v4/user", DEMO_TOKEN).status_code == 200


# --- transport and command line ---

def test_keep_alive_serves_several_requests_on_one_connection(server):
    srv, _ = server
    host, port = srv.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=5)
    sockets = []
    try:
        for path in ("/api/v4/user", "/api/v4/version", "/api/v4/projects/102"):
            conn.request("GET", path, headers={"PRIVATE-TOKEN": ERIN_TOKEN})
            sockets.append(conn.sock)
            response = conn.getresponse()
            assert response.status == 200 and response.getheader("Connection") != "close"
            response.read()
        assert sockets[0] is not None and all(sock is sockets[0] for sock in sockets)
    finally:
        conn.close()


def test_cli_subprocess_prints_listening_line_and_answers():
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.gitlab", "--port", "0"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=20)
        prefix = "gitlab stand-in listening on http://127.0.0.1:"
        assert line.startswith(prefix) and line.strip()[len(prefix):].isdigit()
        url = line.strip().split(" on ")[1]
        assert ok(url, "/api/v4/user", ADMIN_TOKEN)["is_admin"] is True
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""  # exactly one stdout line
        err = proc.stderr.read()
        assert "GITLAB STAND-IN: fixed demo users, groups and projects; not a real GitLab" in err
        assert ADMIN_TOKEN in err and DEMO_TOKEN in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
