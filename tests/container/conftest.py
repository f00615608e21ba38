"""What the container tests share. They run only through ``make test-container``
(``python -m tools.container test``), which provisions the engine and builds the images first;
``make test`` does not collect them (pyproject.toml's testpaths).

Every test reaches containers only through ports published on 127.0.0.1, and every wait is
bounded (``wait_for``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from sandbox.gitlab import DEMO_TOKEN
from tests.harness import ADMIN, wait_for

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {DEMO_TOKEN}"}
MODELS = ["gpt-4o", "claude-sonnet", "claude-opus-5-5", "gpt-6.2-sol"]


def docker(*args: str, timeout: float = 120, check: bool = True, env: dict | None = None,
           cwd: Path = ROOT) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def clean_env(**extra: str) -> dict:
    """The environment a fresh user's shell would have: no provider key, no GitLab, no compose
    settings from the developer's shell; the base images make test-container chose."""
    keep = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "PYTHON_BASE", "DEBIAN_BASE", "TMPDIR")
    return {**{name: os.environ[name] for name in keep if name in os.environ}, **extra}


class Gateway:
    """The requests every container test makes, against one published address."""

    def __init__(self, url: str):
        self.url = url

    def ready(self) -> dict | None:
        try:
            answer = requests.get(f"{self.url}/ready", headers=ADMIN, timeout=3)
            return answer.json() if answer.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def wait_ready(self, models: list[str], timeout: float = 90.0) -> dict:
        def workers_up():
            ready = self.ready()
            if ready and all(ready["models"].get(model, {}).get("workers") for model in models):
                return ready
            return None
        return wait_for(workers_up, timeout=timeout, interval=0.5, message=f"{self.url}/ready with workers")

    def chat(self, content: str, model: str = "gpt-4o", **kwargs) -> requests.Response:
        return requests.post(f"{self.url}/v1/chat/completions", headers={**AUTH, **kwargs.pop("headers", {})},
                             json={"model": model, "messages": [{"role": "user", "content": content}]},
                             timeout=kwargs.pop("timeout", 30), **kwargs)

    def check_health(self) -> None:
        answer = requests.get(f"{self.url}/health", timeout=5)
        assert answer.status_code == 200, answer.text

    def check_chat(self) -> None:
        answer = self.chat("Hello from a container test")
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"] == "Sandbox reply: Hello from a container test"

    def check_stream(self) -> None:
        """A stream arrives event by event: the first content well before the last (nothing on the
        way buffers it), each as an SSE data line, ending with [DONE]."""
        started = time.monotonic()
        with requests.post(f"{self.url}/v1/chat/completions", headers=AUTH, stream=True, timeout=30, json={
                "model": "claude-sonnet", "stream": True,
                "messages": [{"role": "user", "content": "one two three four five six [[sandbox chunk_delay_ms=300]]"}],
        }) as answer:
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("text/event-stream")
            arrivals, text = [], ""
            for line in answer.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                arrivals.append(time.monotonic() - started)
                if line == b"data: [DONE]":
                    break
                for choice in json.loads(line[6:]).get("choices", []):
                    text += choice.get("delta", {}).get("content") or ""
        assert "one two three four five six" in text, text
        assert arrivals[-1] - arrivals[0] > 1.0, arrivals  # the chunks were 300 ms apart upstream
        first_content = arrivals[1] if len(arrivals) > 1 else arrivals[0]
        assert first_content < arrivals[-1] - 0.9, arrivals

    def check_refused_token(self) -> None:
        answer = requests.post(f"{self.url}/v1/chat/completions", timeout=10,
                               headers={"Authorization": "Bearer glpat-not-a-real-token"},
                               json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "invalid_credentials", answer.text
        assert "glpat-not-a-real-token" not in answer.text


@pytest.fixture(scope="session", autouse=True)
def engine_answers():
    result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, "no Docker engine answers: run these through `make test-container`"
    missing = [image for image in ("ai-gateway:local", "ai-gateway-redis:local", "ai-gateway-proxy:local")
               if docker("image", "inspect", image, check=False).returncode != 0]
    assert not missing, f"images not built: {missing}; run these through `make test-container`"
