"""`make run` from nothing: embedded Redis, the sandbox provider, a curl line that works, listening
on loopback only, Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import socket
import sys

import pytest
import requests

from sandbox.gitlab import DEMO_TOKEN
from tests.harness import Process, wait_for
from tools.embedded_redis import free_port


def test_make_run_starts_everything_and_ctrl_c_stops_it(tmp_path):
    port, metrics_port = free_port(), free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: the embedded one starts
        "WEB_CONCURRENCY": "1",
        "PYTHONUNBUFFERED": "1",
    }
    run = Process("make-run", [sys.executable, "-m", "tools.run"], env, tmp_path / "run.log")
    try:
        found = wait_for(lambda: re.search(r"curl -s (\S+) \\\s+-H '([^']+)' \\\s+-H '([^']+)' \\\s+-d '([^']+)'",
                                           run.log()), timeout=90, message="the curl line")
        output = run.log()
        assert "started an embedded one" in output
        assert "SANDBOX provider" in output
        assert "GitLab STAND-IN" in output
        url, first, second, body = found.groups()
        headers = dict(header.split(": ", 1) for header in (first, second))
        assert headers["Authorization"] == f"Bearer {DEMO_TOKEN}"
        answer = requests.post(url, data=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Sandbox reply: " + \
            json.loads(body)["messages"][0]["content"]
        # Loopback only: 127.0.0.2 is this machine too, but not the address the gateway listens on.
        assert url.startswith(f"http://127.0.0.1:{port}/")
        assert "listening on 127.0.0.1 only" in output and "WARNING: listening on HOST" not in output
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5).close()
        assert requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).status_code == 200
        with pytest.raises(ConnectionRefusedError):  # the metrics port too
            socket.create_connection(("127.0.0.2", metrics_port), timeout=5).close()
        run.signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0
        assert "[make run] stopped" in run.log()
        try:
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
            still_up = True
        except requests.ConnectionError:
            still_up = False
        assert not still_up
    finally:
        run.stop()
