"""``compose.yaml`` with ``compose.gitlab-network.yaml`` and the real settings: GITLAB_URL names a
"GitLab" on an external network (here the GitLab stand-in in a container of its own, as a GitLab
container would sit there) and both provider keys are set (their base URLs point at the sandbox
provider on that network). No stand-in of the stack serves; the API checks its token with that
GitLab and answers; GitLab's side reaches the gateway through the proxy as `ai-gateway`."""

from __future__ import annotations

import pytest

from sandbox.gitlab import ADMIN_TOKEN
from tests.container.conftest import Gateway, clean_env, docker, free_port, unique
from tests.harness import wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prefix = unique("aigwg")
    network, gitlab = f"{prefix}-gitlab", f"{prefix}-gitlab-host"
    env_file = tmp_path_factory.mktemp("gitlab-network") / "real.env"
    env_file.write_text("\n".join([
        "GITLAB_URL=http://gitlab:8001", f"GITLAB_API_TOKEN={ADMIN_TOKEN}",
        "OPENAI_API_KEY=sk-proj-test-openai", "ANTHROPIC_API_KEY=sk-ant-test-anthropic",
        "OPENAI_BASE_URL=http://gitlab:8000/v1", "ANTHROPIC_BASE_URL=http://gitlab:8000/v1", ""]))
    port = free_port()
    env = clean_env(ENV_FILE=str(env_file), GITLAB_NETWORK=network, GATEWAY_PORT=str(port),
                    METRICS_PUBLISHED_PORT=str(free_port()))
    compose = ["compose", "-p", prefix, "--env-file", str(env_file), "-f", "compose.yaml",
               "-f", "compose.gitlab-network.yaml"]
    docker("network", "create", network)
    try:
        docker("run", "-d", "--name", gitlab, "--network", network, "--network-alias", "gitlab", "--read-only",
               "ai-gateway:local", "python", "-m", "tools.container.standin")
        docker(*compose, "up", "-d", env=env, timeout=180)
        yield prefix, compose, env, gitlab, Gateway(f"http://127.0.0.1:{port}")
    finally:
        docker(*compose, "down", "-v", "--timeout", "20", env=env, check=False, timeout=120)
        docker("rm", "-f", gitlab, check=False)
        docker("network", "rm", network, check=False)


def test_the_real_settings_use_no_standin_of_the_stack(stack):
    prefix, compose, env, gitlab, gateway = stack
    gateway.wait_ready(["gpt-4o", "claude-sonnet"])
    gateway.check_chat()
    gateway.check_refused_token()
    standins = docker(*compose, "ps", "-a", "--format", "{{.State}} {{.ExitCode}}", "standins", env=env).stdout
    assert standins.split() == ["exited", "0"], standins
    assert "no stand-in is needed" in docker(*compose, "logs", "standins", env=env).stdout
    api_log = docker(*compose, "logs", "api", env=env).stdout
    assert "STAND-IN" not in api_log and "SANDBOX" not in api_log
    assert '"message": "GitLab token checked"' in api_log and '"gitlab_url": "http://gitlab:8001"' in api_log
    assert "sk-proj-test-openai" not in api_log


def test_gitlab_side_reaches_the_gateway_through_the_proxy(stack):
    _prefix, _compose, _env, gitlab, _gateway = stack
    probe = "import urllib.request; print(urllib.request.urlopen('http://ai-gateway:8080/health', timeout=5).status)"
    wait_for(lambda: docker("exec", gitlab, "python", "-c", probe, check=False).stdout.strip() == "200",
             timeout=30, interval=0.5, message="http://ai-gateway:8080/health from the GitLab network")

