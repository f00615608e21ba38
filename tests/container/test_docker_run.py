"""The README's `docker run` lines ("Running in containers"), run as written (names and the
published port made unique), then what a user would try against them; and the container's own
refusals: a missing setting, a real provider key behind the GitLab stand-in."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.container.conftest import MODELS, ROOT, Gateway, docker, free_port, unique
from tests.harness import wait_for

MARKER = "<!-- test-container: docker-run -->"


def readme_commands() -> list[str]:
    """The shell lines of the README's marked block, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(MARKER) + r"\s*```sh\n(.*?)```", text, re.S)
    assert block, f"README.md has no {MARKER} block"
    return [line for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def stack():
    prefix, port = unique("aigwt"), free_port()
    commands = []
    for line in readme_commands():
        if line.startswith("docker build"):
            continue  # make test-container built the images (with the local base where needed)
        line = line.replace("aigw-", f"{prefix}-").replace("127.0.0.1:8080:8080", f"127.0.0.1:{port}:8080")
        commands.append(line)
    try:
        for line in commands:
            result = subprocess.run(["bash", "-c", line], cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, f"{line}\n{result.stderr}"
        yield prefix, Gateway(f"http://127.0.0.1:{port}")
    finally:
        names = docker("ps", "-aq", "--filter", f"name={prefix}-", check=False).stdout.split()
        if names:
            docker("rm", "-f", *names, check=False)
        docker("network", "rm", f"{prefix}-net", check=False)
        volumes = docker("volume", "ls", "-q", "--filter", f"name={prefix}-", check=False).stdout.split()
        if volumes:
            docker("volume", "rm", *volumes, check=False)


def test_readme_docker_run_serves_with_the_sandbox(stack):
    prefix, gateway = stack
    gateway.wait_ready(MODELS)
    gateway.check_health()
    gateway.check_chat()
    gateway.check_stream()
    gateway.check_refused_token()
    log = docker("logs", f"{prefix}-web").stderr
    assert "callers are checked against the GitLab STAND-IN" in log
    assert "served by the SANDBOX provider" in log
    assert "has no API key" not in log  # the sandbox's models need none


def test_the_image_runs_as_its_user_and_writes_only_where_allowed(stack):
    prefix, _gateway = stack
    assert docker("exec", f"{prefix}-web", "id", "-u").stdout.strip() == "10001"
    inspect = docker("inspect", f"{prefix}-web", "--format", "{{.HostConfig.ReadonlyRootfs}}").stdout.strip()
    assert inspect == "true"
    refused = docker("exec", f"{prefix}-web", "touch", "/app/x", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    # One log directory per container on the shared volume: PIDs repeat across containers.
    logs = docker("exec", f"{prefix}-web", "sh", "-c", "ls /var/log/ai-gateway/*/").stdout
    assert re.search(r"api-master-1\.log", logs) and re.search(r"workers-1\.log", logs), logs


def test_the_web_container_reports_healthy(stack):
    prefix, _gateway = stack
    def status():
        return docker("inspect", f"{prefix}-web", "--format", "{{.State.Health.Status}}").stdout.strip() == "healthy"
    wait_for(status, timeout=60, interval=1, message="the HEALTHCHECK's first pass")


def run_once(*args: str) -> subprocess.CompletedProcess:
    return docker("run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v",
                  f"{ROOT}/config/example.yaml:/etc/ai-gateway/config.yaml:ro", *args, check=False, timeout=60)


def test_missing_settings_exit_2_with_one_line_each():
    result = run_once("-e", "LOG_DIR=", "ai-gateway:local")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert any(line.startswith("config error: GITLAB_URL: required") for line in errors), result.stderr
    assert any(line.startswith("config error: GITLAB_API_TOKEN: required") for line in errors), result.stderr
    assert "Traceback" not in result.stderr


def test_a_real_key_behind_the_gitlab_standin_is_refused():
    result = run_once("-e", "STANDIN_URL=http://nowhere", "-e", "ANTHROPIC_API_KEY=sk-ant-real-looking-key",
                      "-e", "PUBLISHED_ADDRESS=0.0.0.0", "ai-gateway:local", "python", "-m", "workers")
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert len(errors) == 3, result.stderr
    assert errors[0].startswith("config error: ANTHROPIC_API_KEY: refused while the GitLab stand-in"), errors
    assert errors[1].startswith("config error: PUBLISHED_ADDRESS: 0.0.0.0 refused"), errors
    assert errors[2].startswith("config error: LOG_DIR: /var/log/ai-gateway is not writable"), errors  # no volume
    assert "sk-ant-real-looking-key" not in result.stderr
