"""`make run` from nothing: embedded Redis, the sandbox provider, a curl line that works, the coding
agents' default models served, listening on loopback only, Ctrl-C; the Redis at REDIS_URL only when
it is set, and refused when nothing answers there."""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
from pathlib import Path

import pytest
import redis
import requests

from sandbox.gitlab import DEMO_TOKEN
from tests.harness import ADMIN, Process, wait_for
from tools.embedded_redis import EmbeddedRedis, free_port

FIXTURES = Path(__file__).resolve().parents[1] / "clients" / "fixtures"


def test_make_run_starts_everything_and_ctrl_c_stops_it(tmp_path):
    port, metrics_port = free_port(), free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        # No REDIS_URL: the embedded one starts, whatever answers at localhost:6379.
        "WEB_CONCURRENCY": "1",
        "PYTHONUNBUFFERED": "1",
    }
    run = Process("make-run", [sys.executable, "-m", "tools.run"], env, tmp_path / "run.log")
    try:
        found = wait_for(lambda: re.search(r"curl -s (\S+) \\\s+-H '([^']+)' \\\s+-H '([^']+)' \\\s+-d '([^']+)'",
                                           run.log()), timeout=90, message="the curl line")
        output = run.log()
        assert "REDIS_URL is not set: started an embedded Redis at redis://127.0.0.1:" in output
        assert "SANDBOX provider" in output
        assert "no api_key" not in output  # the sandbox serves every model: nothing is missing
        assert "GitLab STAND-IN" in output
        # One worker process per model, not the example config's server sizing (4 each).
        assert "one worker process per model" in output
        def live_workers():
            models = requests.get(f"http://127.0.0.1:{port}/ready", headers=ADMIN, timeout=10).json()["models"]
            counts = {name: model["workers"] for name, model in models.items()}
            return counts if all(counts.values()) else None
        workers = wait_for(live_workers, timeout=30, interval=0.25, message="every model's worker registered")
        assert workers == {name: 1 for name in workers}, workers
        url, first, second, body = found.groups()
        headers = dict(header.split(": ", 1) for header in (first, second))
        assert headers["Authorization"] == f"Bearer {DEMO_TOKEN}"
        answer = requests.post(url, data=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Sandbox reply: " + \
            json.loads(body)["messages"][0]["content"]
        serves_the_coding_agents_defaults(url.rsplit("/v1/", 1)[0])
        # Loopback only: 127.0.0.2 is this machine too, but not the address the gateway listens on.
        assert url.startswith(f"http://127.0.0.1:{port}/")
        assert "listening on 127.0.0.1 only" in output and "WARNING: listening on HOST" not in output
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
        assert requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).status_code == 200
        with pytest.raises(ConnectionRefusedError):  # the metrics port too
            socket.create_connection(("127.0.0.2", metrics_port), timeout=5).close()
        stopping_at = len(run.log())
        run.signal(signal.SIGINT, group=True)  # as a terminal's Ctrl-C: the launcher's whole process group
        assert run.wait(timeout=60) == 0
        assert "[make run] stopped" in run.log()
        # Redis outlived the processes that use it: none of them lost it while stopping.
        stopping = run.log()[stopping_at:]
        assert "Connection refused" not in stopping and "Traceback" not in stopping, stopping
        try:
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
            still_up = True
        except requests.ConnectionError:
            still_up = False
        assert not still_up
    finally:
        run.stop()


def test_make_run_uses_the_redis_at_redis_url_when_set(tmp_path):
    redis_server = EmbeddedRedis().start()
    url = redis_server.url
    run = Process("make-run", [sys.executable, "-m", "tools.run"],
                  {"PATH": "/usr/bin:/bin", "PORT": str(free_port()), "METRICS_PORT": str(free_port()),
                   "REDIS_URL": url, "WEB_CONCURRENCY": "1", "PYTHONUNBUFFERED": "1"}, tmp_path / "run.log")
    try:
        client = redis.Redis.from_url(url)
        # The gateway's keys are there, as the line says: the workers' and their queues'.
        wait_for(lambda: client.scard("rq:workers") and client.scard("rq:queues"), timeout=90,
                 message="workers and queues registered in REDIS_URL's Redis")
        output = run.log()
        assert f"using the Redis at REDIS_URL ({url})" in output and "embedded" not in output
        run.signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
    finally:
        run.stop()
        redis_server.stop()


def test_make_run_refuses_a_redis_url_where_nothing_answers(tmp_path):
    url = f"redis://:s3cret-pass@127.0.0.1:{free_port()}/0"
    run = Process("make-run", [sys.executable, "-m", "tools.run"], {"PATH": "/usr/bin:/bin", "REDIS_URL": url},
                  tmp_path / "run.log")
    try:
        assert run.wait(timeout=30) == 2
        output = run.log()
        assert "config error: REDIS_URL: no Redis answers at redis://:***@127.0.0.1:" in output
        assert "s3cret-pass" not in output and "Traceback" not in output
    finally:
        run.stop()


def recorded_request(name: str) -> tuple[dict, dict]:
    """The first request a pinned CLI sent with no model configured (tests/clients/TRAFFIC.md): the
    headers the gateway acts on, and the body."""
    request = json.loads((FIXTURES / name).read_text())["requests"][0]
    headers = {key: value for key, value in request["headers"]
               if key.lower() in ("anthropic-beta", "anthropic-version", "x-claude-code-session-id", "session-id")}
    return headers, request["body"]


def serves_the_coding_agents_defaults(base: str) -> None:
    """The example config serves, to the demo user, the model Claude Code asks for by default (its
    request passed through, betas and all) and Codex's default (its responses-lite request passed through)."""
    auth = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    claude_headers, claude_body = recorded_request("claude-code-2.1.332-tool.json")
    codex_headers, codex_body = recorded_request("codex-0.171.0-tool.json")
    defaults = {claude_body["model"], codex_body["model"]}
    assert defaults == {"claude-opus-5-5", "gpt-6.2-sol"}
    listed = requests.get(f"{base}/v1/models", headers=auth, timeout=10).json()["data"]
    assert defaults <= {model["id"] for model in listed}
    # make run prints its curl line once one model has a worker; each model's start within a minute.
    def ready() -> bool:
        models = requests.get(f"{base}/ready", headers=ADMIN, timeout=5).json().get("models", {})
        return all(models.get(name, {}).get("workers") for name in defaults)

    wait_for(ready, timeout=60, message="workers for the CLIs' default models")
    answer = requests.post(f"{base}/v1/messages?beta=true", json=claude_body, headers={**auth, **claude_headers},
                           timeout=60)
    assert answer.status_code == 200, answer.text
    assert event_names(answer.text)[-1] == "message_stop", answer.text
    answer = requests.post(f"{base}/v1/responses", json=codex_body, headers={**auth, **codex_headers}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert event_names(answer.text)[-1] == "response.completed", answer.text


def event_names(stream: str) -> list[str]:
    return re.findall(r"^event: (\S+)$", stream, flags=re.MULTILINE)
