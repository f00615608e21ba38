"""Operating the gateway: ``python -m workers.inspect`` and ``GET /admin/queues`` against real queues
served by real workers (a failed job, its listing and its purge; jobs waiting and in progress)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import requests

from sandbox.gitlab import ADMIN_TOKEN, ALICE_JOB_TOKEN
from tests.harness import ROOT, Stack, in_background, wait_for

CONFIG = """
models:
  - name: steady
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 20s
    retries: {attempts: 1}
    workers: 1
    concurrency: 1
  - name: spare
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    workers: 0
jobs:
  failure_ttl: 2m
"""
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROMPT = "a prompt only its caller may read"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("operations"), CONFIG) as gateway:
        yield gateway


def inspect(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "workers.inspect", *args], cwd=ROOT, env=stack.env,
                          capture_output=True, text=True, timeout=30)


def report(stack: Stack) -> dict:
    done = inspect(stack, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def without_ages(answer: dict) -> dict:
    return {name: {key: value for key, value in facts.items() if key != "oldest_queued_age_seconds"}
            for name, facts in answer["models"].items()}


def test_a_failed_job_is_listed_and_purged_by_the_command_and_the_admin_endpoint(stack):
    answer = stack.chat("steady", f"[[sandbox fail=503 times=9]] {PROMPT}", headers={"X-Request-Id": "ops-failed-1"})
    assert answer.status_code >= 500
    first = wait_for(lambda: (found := report(stack))["models"]["steady"]["failed"] == 1 and found, timeout=10,
                     message="the failed job in the report")
    assert first["models"] == {
        "steady": {"configured": True, "queued": 0, "in_progress": 0, "workers": 1, "failed": 1,
                   "oldest_queued_age_seconds": None},
        "spare": {"configured": True, "queued": 0, "in_progress": 0, "workers": 0, "failed": 0,
                  "oldest_queued_age_seconds": None}}
    assert first["suspended"] is False
    table = inspect(stack)
    assert table.returncode == 0 and table.stdout.splitlines()[1].split() == ["steady", "0", "0", "1", "1", "-"]

    admin = stack.get("/admin/queues", headers=ADMIN)
    assert admin.status_code == 200 and admin.json() == first

    listed = inspect(stack, "failed", "steady", "--json")
    assert listed.returncode == 0
    (job,) = json.loads(listed.stdout)
    assert job["request_id"] == "ops-failed-1" and job["endpoint"] == "chat.completions"
    assert job["error"].startswith("workers.jobs.JobFailed: ") and job["failed_at"].endswith("Z")
    text = inspect(stack, "failed", "steady")
    assert "request_id=ops-failed-1" in text.stdout and "never requeued" in text.stdout
    for output in (listed.stdout, text.stdout, admin.text):
        assert PROMPT not in output and ADMIN_TOKEN not in output

    purged = inspect(stack, "purge", "steady")
    assert (purged.returncode, purged.stdout.strip()) == (0, "steady: removed 1 failed job and their records")
    assert report(stack)["models"]["steady"]["failed"] == 0
    assert stack.get("/admin/queues", headers=ADMIN).json()["models"]["steady"]["failed"] == 0
    assert json.loads(inspect(stack, "failed", "steady", "--json").stdout) == []
    assert stack.chat("steady", "after the purge").status_code == 200  # nothing requeued, the model serves on


def test_jobs_waiting_and_in_progress_and_the_oldest_s_age(stack):
    results: dict = {}
    busy = in_background(stack, results, "ops-busy", "steady", "[[sandbox delay_ms=4000]] hold the only slot")
    wait_for(lambda: stack.sandbox_calls("ops-busy") == 1, timeout=10, message="the first job at the provider")
    waiting = in_background(stack, results, "ops-waiting", "steady", "waits its turn")
    found = wait_for(lambda: (now := report(stack))["models"]["steady"]["queued"] == 1 and now, timeout=10,
                     message="the second job waiting")
    steady = found["models"]["steady"]
    assert (steady["in_progress"], steady["workers"]) == (1, 1)
    assert 0 <= steady["oldest_queued_age_seconds"] < 10
    later = wait_for(lambda: report(stack)["models"]["steady"]["oldest_queued_age_seconds"] or 0, timeout=5)
    assert later > 0
    admin = stack.get("/admin/queues", headers=ADMIN).json()
    assert without_ages(admin) == without_ages(found) and admin["models"]["steady"]["oldest_queued_age_seconds"] > 0
    busy.join(30)
    waiting.join(30)
    assert results["ops-busy"].status_code == 200 and results["ops-waiting"].status_code == 200
    assert without_ages(report(stack))["steady"] == {"configured": True, "queued": 0, "in_progress": 0,
                                                      "workers": 1, "failed": 0}


def test_watch_prints_a_report_per_refresh_until_interrupted(stack):
    watching = subprocess.Popen([sys.executable, "-m", "workers.inspect", "--json", "--watch", "0.5"], cwd=ROOT,
                                env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [watching.stdout.readline() for _ in range(3)]
        assert [sorted(json.loads(line)["models"]) for line in lines] == [["spare", "steady"]] * 3
        watching.send_signal(signal.SIGINT)
        assert watching.wait(timeout=10) == 0
    finally:
        watching.kill()
        watching.communicate()


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({}, 403, "admin_only"),  # the demo user, alice: not an administrator
    ({"JOB-TOKEN": ALICE_JOB_TOKEN}, 403, "admin_only"),  # a CI job is never one
    ({"Authorization": "Bearer glpat-nobody-knows-this-one"}, 401, "invalid_credentials"),
], ids=["user", "job-token", "unknown-token"])
def test_admin_queues_answers_administrators_only(stack, headers, status, code):
    answer = stack.get("/admin/queues", headers=headers)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}  # OpenAI's format
    assert "steady" not in answer.text  # nothing of the queues


def test_admin_queues_without_a_credential_is_401(stack):
    answer = requests.get(f"{stack.url}/admin/queues", timeout=10)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "missing_credentials"
