"""Tests for the GitLab stand-in's test controls, over real HTTP on loopback: fault injection, the call
log and reset, plus keep-alive and the command line.

Identity and tokens: test_sandbox_gitlab.py. Projects, memberships and groups: test_sandbox_gitlab_access.py.
"""

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
)
from tests.unit.gitlab_fixtures import get, ok

ROOT = Path(__file__).resolve().parents[2]
ALL_TOKENS = [ADMIN_TOKEN, DEMO_TOKEN, DEMO_OAUTH_TOKEN, BOB_TOKEN, CAROL_TOKEN, DAVE_TOKEN, ERIN_TOKEN,
              PROJECT_BOT_TOKEN, ALICE_JOB_TOKEN, ERIN_JOB_TOKEN, CAROL_JOB_TOKEN]


def fault(gitlab_url, **spec):
    response = requests.post(f"{gitlab_url}/_gitlab/fault", json=spec, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def calls(gitlab_url):
    return requests.get(f"{gitlab_url}/_gitlab/calls", timeout=5).json()["calls"]


def sha16(token):
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# --- faults ---

def test_fault_status_with_times_then_recovers(gitlab_url):
    fault(gitlab_url, status=503, times=2)
    for _ in range(2):
        response = get(gitlab_url, "/api/v4/user", DEMO_TOKEN)
        assert response.status_code == 503 and response.json() == {"message": "503 Service Unavailable"}
    assert get(gitlab_url, "/api/v4/user", DEMO_TOKEN).status_code == 200
    assert requests.get(f"{gitlab_url}/_gitlab/fault", timeout=5).json() == {"fault": None}


def test_fault_without_times_persists_until_deleted(gitlab_url):
    fault(gitlab_url, status=500)
    assert [get(gitlab_url, "/api/v4/version", BOB_TOKEN).status_code for _ in range(3)] == [500] * 3
    assert requests.delete(f"{gitlab_url}/_gitlab/fault", timeout=5).json() == {"fault": None}
    assert get(gitlab_url, "/api/v4/version", BOB_TOKEN).status_code == 200


def test_fault_applies_before_auth_and_sends_retry_after(gitlab_url):
    fault(gitlab_url, status=429, retry_after=7, times=1)
    response = get(gitlab_url, "/api/v4/user")  # no token: the fault still wins
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert get(gitlab_url, "/api/v4/user").status_code == 401


def test_fault_delay_only_delays_then_answers(gitlab_url):
    fault(gitlab_url, delay_ms=300, times=1)
    started = time.monotonic()
    response = get(gitlab_url, "/api/v4/user", DEMO_TOKEN)
    elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.json()["id"] == 2
    assert 0.3 <= elapsed < 5.0


def test_fault_close_drops_the_connection(gitlab_url):
    fault(gitlab_url, close=True, times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        get(gitlab_url, "/api/v4/user", DEMO_TOKEN)
    assert get(gitlab_url, "/api/v4/user", DEMO_TOKEN).status_code == 200
    assert len(calls(gitlab_url)) == 2  # the dropped call is still logged


def test_fault_path_filter(gitlab_url):
    fault(gitlab_url, status=503, paths=["/api/v4/user", "/api/v4/projects/1"])
    assert get(gitlab_url, "/api/v4/user", DEMO_TOKEN).status_code == 503
    assert get(gitlab_url, "/api/v4/projects/100", DEMO_TOKEN).status_code == 503  # prefix match
    assert get(gitlab_url, "/api/v4/version", DEMO_TOKEN).status_code == 200
    assert get(gitlab_url, "/api/v4/groups/10", DEMO_TOKEN).status_code == 200


def test_new_fault_replaces_the_old_one(gitlab_url):
    fault(gitlab_url, status=500)
    fault(gitlab_url, status=502, times=1)
    assert get(gitlab_url, "/api/v4/user", DEMO_TOKEN).status_code == 502
    assert get(gitlab_url, "/api/v4/user", DEMO_TOKEN).status_code == 200


def test_controls_are_never_faulted(gitlab_url):
    fault(gitlab_url, close=True, paths=["/"])
    assert requests.get(f"{gitlab_url}/_gitlab/calls", timeout=5).status_code == 200
    assert requests.get(f"{gitlab_url}/_gitlab/fault", timeout=5).json()["fault"]["close"] is True
    assert requests.post(f"{gitlab_url}/_gitlab/reset", timeout=5).status_code == 200
    assert get(gitlab_url, "/api/v4/user", DEMO_TOKEN).status_code == 200


def test_fault_times_is_exact_under_concurrency(gitlab_url):
    fault(gitlab_url, status=503, times=3)
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(lambda _: get(gitlab_url, "/api/v4/version", BOB_TOKEN).status_code, range(10)))
    assert sorted(codes) == [200] * 7 + [503] * 3


@pytest.mark.parametrize("body", [{}, {"status": 200}, {"status": 700}, {"status": "503"}, {"status": 503, "times": 0},
                                  {"delay_ms": -1}, {"close": "yes"}, {"status": 503, "paths": "/api"},
                                  {"status": 503, "bogus": 1}, [503], {"status": True}])
def test_bad_fault_bodies_are_refused(gitlab_url, body):
    response = requests.post(f"{gitlab_url}/_gitlab/fault", json=body, timeout=5)
    assert response.status_code == 400 and response.json()["message"].startswith("400")
    assert requests.get(f"{gitlab_url}/_gitlab/fault", timeout=5).json() == {"fault": None}


# --- call log ---

def test_call_log_records_hashed_tokens_in_order_and_never_raw_ones(gitlab_url):
    get(gitlab_url, "/api/v4/user", DEMO_TOKEN)
    get(gitlab_url, "/api/v4/user", DEMO_OAUTH_TOKEN, how="bearer")
    get(gitlab_url, "/api/v4/job", ALICE_JOB_TOKEN, how="job")
    get(gitlab_url, "/api/v4/version")
    get(gitlab_url, "/api/v4/projects/acme%2Fhandbook", ADMIN_TOKEN)
    requests.get(f"{gitlab_url}/_gitlab/fault", timeout=5)  # controls are not API calls
    entries = calls(gitlab_url)
    assert [(c["method"], c["path"], c["auth"], c["token_sha256"]) for c in entries] == [
        ("GET", "/api/v4/user", "private", sha16(DEMO_TOKEN)),
        ("GET", "/api/v4/user", "bearer", sha16(DEMO_OAUTH_TOKEN)),
        ("GET", "/api/v4/job", "job", sha16(ALICE_JOB_TOKEN)),
        ("GET", "/api/v4/version", None, None),
        ("GET", "/api/v4/projects/acme%2Fhandbook", "private", sha16(ADMIN_TOKEN)),
    ]
    times = [c["time"] for c in entries]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 60
    text = requests.get(f"{gitlab_url}/_gitlab/calls", timeout=5).text
    assert not any(token in text for token in ALL_TOKENS)


def test_call_log_keeps_the_last_1000(gitlab_url):
    with requests.Session() as session:
        for i in range(1003):
            session.get(f"{gitlab_url}/api/v4/projects/{i}", timeout=5)
    entries = calls(gitlab_url)
    assert len(entries) == 1000
    assert entries[0]["path"] == "/api/v4/projects/3" and entries[-1]["path"] == "/api/v4/projects/1002"


def test_reset_clears_calls_and_fault(gitlab_url):
    get(gitlab_url, "/api/v4/user", DEMO_TOKEN)
    fault(gitlab_url, status=500)
    requests.post(f"{gitlab_url}/_gitlab/reset", timeout=5)
    assert calls(gitlab_url) == []
    assert get(gitlab_url, "/api/v4/user", DEMO_TOKEN).status_code == 200


# --- transport and command line ---

def test_keep_alive_serves_several_requests_on_one_connection(gitlab):
    srv, _ = gitlab
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
