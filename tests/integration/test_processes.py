"""Process lifecycles: refusing a bad config, Redis down, worker shutdown and restart."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest
import requests

from tests.harness import Process, Stack, wait_for, with_credential
from tools.embedded_redis import free_port

BAD_CONFIG = """
models:
  - name: good
    type: generic
    base_url: http://127.0.0.1:9/v1
  - name: bad
    type: gemini
    colour: blue
    workers: two
    api_key: "${AIGW_TEST_UNSET_VARIABLE}"
routes:
  - destination: nowhere
"""

EXPECTED_PROBLEMS = [
    "models[1].type: must be one of openai, anthropic, vertex, generic",
    "models[1].colour: unknown key",
    "models[1].workers: must be an integer",
    "models[1].api_key: environment variable AIGW_TEST_UNSET_VARIABLE is not set",
    "routes[0].destination: 'nowhere' is not a configured model",
]


@pytest.fixture
def bad_config_env(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG)
    return {"CONFIG_FILE_PATH": str(path), "REDIS_URL": "redis://127.0.0.1:9/0", "PORT": str(free_port()),
            "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "api.wsgi:app"],
    [sys.executable, "-m", "workers"],
], ids=["web", "worker"])
def test_bad_config_refuses_to_start_naming_every_problem(tmp_path, bad_config_env, command):
    process = Process("bad", command, bad_config_env, tmp_path / "out.log")
    assert process.wait(timeout=30) == 2
    output = process.log()
    for problem in EXPECTED_PROBLEMS:
        assert problem in output
    assert "Traceback" not in output
    process.stop()


def test_bad_environment_refuses_to_start(tmp_path, bad_config_env):
    env = {**bad_config_env, "PORT": "eighty", "LOG_FORMAT": "xml"}
    process = Process("bad", [sys.executable, "-m", "workers"], env, tmp_path / "out.log")
    assert process.wait(timeout=30) == 2
    output = process.log()
    assert "PORT: must be an integer" in output
    assert "LOG_FORMAT: must be one of text, json" in output
    process.stop()


def test_bad_web_settings_stop_gunicorn_naming_them(tmp_path, bad_config_env):
    env = {**bad_config_env, "WEB_THREADS": "many", "STREAM_KEEPALIVE_INTERVAL": "soon"}
    process = Process("bad", [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "api.wsgi:app"],
                      env, tmp_path / "out.log")
    assert process.wait(timeout=30) == 2
    output = process.log()
    assert "WEB_THREADS: must be a positive integer, got 'many'" in output
    assert "STREAM_KEEPALIVE_INTERVAL: must be a positive number of seconds, got 'soon'" in output
    assert "Traceback" not in output
    process.stop()


def test_redis_down_is_503_and_health_stays_ok(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("models:\n  - name: m\n    type: generic\n    base_url: http://127.0.0.1:9/v1\n")
    port = free_port()
    env = {"CONFIG_FILE_PATH": str(config), "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "PORT": str(port), "WEB_CONCURRENCY": "1", "PATH": "/usr/bin:/bin", "METRICS_PORT": str(free_port()),
           "GITLAB_URL": f"http://127.0.0.1:{free_port()}", "GITLAB_API_TOKEN": "glpat-unused"}
    web = Process("web", [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "api.wsgi:app"],
                  env, tmp_path / "web.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(f"{url}/health"), timeout=30, message="the API to listen")
        ready = requests.get(f"{url}/ready", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["redis"]["ok"] is False
        chat = requests.post(f"{url}/v1/chat/completions", timeout=15, headers=with_credential({}),
                             json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 503
        assert chat.json()["error"]["code"] == "service_unavailable"
        assert "Traceback" not in chat.text
    finally:
        web.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


LIFECYCLE_CONFIG = """
models:
  - name: slow
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 5s
    workers: 0
  - name: late
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 2s
    workers: 0
  - name: always
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 2s
    workers: 1
"""


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("lifecycle"), LIFECYCLE_CONFIG) as gateway:
        yield gateway


def live_workers(stack: Stack, model: str) -> int:
    return stack.ready().json()["models"][model]["workers"]


def extra_workers(stack: Stack, model: str, tmp_path) -> Process:
    process = Process("extra", [sys.executable, "-m", "workers", model], stack.env, tmp_path / "extra.log")
    wait_for(lambda: live_workers(stack, model) >= 1, timeout=30, message=f"a worker for {model}")
    return process


def test_sigterm_lets_the_running_job_finish(lifecycle, tmp_path):
    workers = extra_workers(lifecycle, "slow", tmp_path)
    results = {}

    def call():
        results["reply"] = lifecycle.chat("slow", "[[sandbox delay_ms=1500]] finish me",
                                          headers={"X-Request-Id": "graceful"})

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(lambda: lifecycle.sandbox_calls("graceful"), timeout=5, message="the job to reach the provider")
    workers.signal(signal.SIGTERM)
    caller.join(15)
    assert results["reply"].status_code == 200
    assert results["reply"].json()["choices"][0]["message"]["content"] == "Sandbox reply: finish me"
    assert workers.wait(timeout=15) == 0
    assert live_workers(lifecycle, "slow") == 0  # it unregistered on the way out
    workers.stop()


def test_job_whose_deadline_passed_in_the_queue_is_dropped_unsent(lifecycle, tmp_path):
    workers = extra_workers(lifecycle, "late", tmp_path)
    try:
        # A frozen worker still counts as live, so the API enqueues; the job then waits.
        workers.signal(signal.SIGSTOP, group=True)
        reply = lifecycle.chat("late", "too late", headers={"X-Request-Id": "late-1"})
        assert reply.status_code == 504
        workers.signal(signal.SIGCONT, group=True)
        wait_for(lambda: '"request_id": "late-1"' in workers.log() and "job dropped" in workers.log(),
                 timeout=15, message="the worker to drop the late job")
        assert lifecycle.sandbox_calls("late-1") == 0
    finally:
        workers.signal(signal.SIGCONT, group=True)
        workers.stop()


def test_a_worker_that_dies_is_restarted(lifecycle):
    redis = lifecycle.redis()

    def worker_names():
        return {key.decode() for key in redis.smembers("rq:workers:always")}

    before = wait_for(worker_names, timeout=10, message="a registered worker")
    pid = int(next(iter(before)).rsplit(".", 1)[1])
    os.kill(pid, signal.SIGKILL)
    after = wait_for(lambda: worker_names() - before, timeout=30, message="a replacement worker")
    assert int(next(iter(after)).rsplit(".", 1)[1]) != pid
    assert lifecycle.chat("always", "still here").status_code == 200
