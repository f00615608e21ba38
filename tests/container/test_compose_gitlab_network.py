"""``compose.yaml`` with ``compose.gitlab-network.yaml`` and the real settings: GITLAB_URL names a
"GitLab" on an external network (here the GitLab stand-in in a container of its own, as a GitLab
container would sit there) and both provider keys are set (their base URLs point at the sandbox
provider on that network). No stand-in of the stack serves; the API checks its token with that
GitLab and answers; GitLab's side reaches the gateway through the proxy as `ai-gateway`.
Anything on that network can reach the API's port directly too: only the proxy's X-Forwarded-For
is believed."""

from __future__ import annotations

import json
import uuid

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
    env = clean_env(GITLAB_NETWORK=network, GATEWAY_PORT=str(port),
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



def _address_on(container: str, network: str) -> str:
    networks = json.loads(docker("inspect", container, "--format", "{{json .NetworkSettings.Networks}}").stdout)
    return networks[network]["IPAddress"]


def _access_records(compose, env, marker: str) -> list[dict]:
    records = []
    for line in docker(*compose, "logs", "--no-log-prefix", "api", env=env).stdout.splitlines():
        if marker in line:
            try:
                records.append(json.loads(line[line.find("{"):]))  # after compose's erase-line escape, if any
            except ValueError:
                pass
    return [record for record in records if "client" in record and marker in record.get("path", "")]


def test_a_direct_connection_from_the_gitlab_network_cannot_name_another_client(stack):
    """A container on GitLab's network that connects to the API's port itself, naming another
    address (GitLab's, say) in X-Forwarded-For, is counted as itself; through the proxy, its own
    address is what the API sees too (the proxy's entry, the right-most, is believed)."""
    _prefix, compose, env, gitlab, gateway = stack
    gateway.wait_ready(["gpt-4o"])
    network = env["GITLAB_NETWORK"]
    [api] = docker(*compose, "ps", "-q", "api", env=env).stdout.split()
    own, api_address = _address_on(gitlab, network), _address_on(api, network)
    marker = uuid.uuid4().hex
    probe = (
        "import sys, urllib.request, urllib.error\n"
        "for url in sys.argv[1:]:\n"
        "    request = urllib.request.Request(url, data=b'{}', method='POST', headers={\n"
        "        'X-Forwarded-For': '203.0.113.7', 'Authorization': 'Bearer glpat-not-a-real-token',\n"
        "        'Content-Type': 'application/json'})\n"
        "    try:\n"
        "        print(urllib.request.urlopen(request, timeout=10).status)\n"
        "    except urllib.error.HTTPError as error:\n"
        "        print(error.code)\n")
    direct = f"http://{api_address}:8080/v1/chat/completions?probe=direct-{marker}"
    proxied = f"http://ai-gateway:8080/v1/chat/completions?probe=proxied-{marker}"
    statuses = docker("exec", gitlab, "python", "-c", probe, direct, proxied).stdout.split()
    assert statuses == ["401", "401"], statuses

    def both_recorded():
        records = _access_records(compose, env, marker)
        return records if len(records) == 2 else None
    try:
        records = wait_for(both_recorded, timeout=15, interval=0.5, message="the probes' access records")
    except AssertionError:
        logs = docker(*compose, "logs", "--no-log-prefix", "api", env=env).stdout.splitlines()
        raise AssertionError([line for line in logs if marker in line or "probe" in line] or logs[-20:]) from None
    clients = {record["path"].split("probe=")[1].split("-")[0]: record["client"] for record in records}
    assert clients == {"direct": own, "proxied": own}, records


def test_the_api_holds_no_provider_key_and_the_workers_no_gitlab_token(stack):
    """Each container gets only the variables it reads: the keys reach the workers alone (the API
    is told they are set), GitLab's token the API alone."""
    _prefix, compose, env, _gitlab, gateway = stack
    gateway.wait_ready(["gpt-4o"])
    [api] = docker(*compose, "ps", "-q", "api", env=env).stdout.split()
    [worker] = docker(*compose, "ps", "-q", "worker-gpt-4o", env=env).stdout.split()

    def environ(container: str) -> dict[str, str]:
        """PID 1's environment, as the entry point left it for the gateway's process."""
        raw = docker("exec", container, "cat", "/proc/1/environ").stdout
        return dict(entry.split("=", 1) for entry in raw.split("\0") if "=" in entry)
    api_env, worker_env = environ(api), environ(worker)
    assert api_env["GITLAB_API_TOKEN"] == ADMIN_TOKEN
    assert api_env["OPENAI_API_KEY"] == api_env["ANTHROPIC_API_KEY"] == "held-by-the-workers"
    assert "sk-proj-test-openai" not in json.dumps(api_env) and "sk-ant-test-anthropic" not in json.dumps(api_env)
    assert worker_env["OPENAI_API_KEY"] == "sk-proj-test-openai"
    assert "GITLAB_API_TOKEN" not in worker_env and ADMIN_TOKEN not in json.dumps(worker_env)
