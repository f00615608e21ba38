"""``compose.yaml`` as a fresh clone runs it (no .env, no provider key, no GitLab): the stand-ins
serve, the proxy is the door on 127.0.0.1, the same requests as the README's `docker run` work
through it; one worker service scales on its own and the extra container takes jobs; slow and idle
clients at the proxy delay nobody; rq-dashboard asks for its credentials; ``down -v`` leaves
nothing behind. The tests run in file order, the last one takes the stack down."""

from __future__ import annotations

import json
import resource
import secrets
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.gitlab import ADMIN_TOKEN
from tests.container.conftest import AUTH, MODELS, Gateway, clean_env, docker, free_port, unique
from tests.harness import wait_for
from tests.integration.raw_http import SlowHeads, chat_request, connect, read_answer

SLOW = 300
IDLE = 300
LINE_INTERVAL = 2.0
GATEWAY_SERVICES = ["standins", "api", *(f"worker-{model}" for model in MODELS)]


class Compose:
    def __init__(self, tmp_path):
        self.project = unique("aigwc")
        self.port, self.metrics_port, self.dashboard_port = free_port(), free_port(), free_port()
        self.password = secrets.token_urlsafe(12)
        empty = tmp_path / "empty.env"
        empty.write_text("")
        # A fresh clone's environment: no .env (the developer's, if any, is not read), no keys.
        self.env = clean_env(GATEWAY_PORT=str(self.port),
                             METRICS_PUBLISHED_PORT=str(self.metrics_port), RQ_DASHBOARD_PORT=str(self.dashboard_port),
                             RQ_DASHBOARD_USERNAME="operator", RQ_DASHBOARD_PASSWORD=self.password)
        self.env_file = str(empty)
        self.gateway = Gateway(f"http://127.0.0.1:{self.port}")

    def __call__(self, *args: str, timeout: float = 180, check: bool = True):
        return docker("compose", "-p", self.project, "--env-file", self.env_file, "--profile", "dashboard", *args,
                      env=self.env, timeout=timeout, check=check)

    def containers(self, service: str) -> list[str]:
        return self("ps", "-q", service).stdout.split()

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        listings = {"containers": ["ps", "-aq"], "networks": ["network", "ls", "-q"], "volumes": ["volume", "ls", "-q"]}
        return {kind: docker(*command, "--filter", label).stdout.split() for kind, command in listings.items()}


@pytest.fixture(scope="module")
def compose(tmp_path_factory):
    stack = Compose(tmp_path_factory.mktemp("compose"))
    try:
        started = time.monotonic()
        stack("up", "-d")
        stack.gateway.wait_ready(MODELS)
        print(f"\ncompose up: ready in {time.monotonic() - started:.1f} s")
        yield stack
    finally:
        stack("down", "-v", "--remove-orphans", "--timeout", "20", check=False)


def test_a_fresh_clone_serves_through_the_proxy_with_the_standins(compose):
    gateway = compose.gateway
    gateway.check_health()
    gateway.check_chat()
    gateway.check_stream()
    gateway.check_refused_token()
    for model in MODELS:
        answer = gateway.chat(f"to {model}", model=model)
        assert answer.status_code == 200, (model, answer.text)
    log = compose("logs", "api").stdout
    assert "callers are checked against the GitLab STAND-IN" in log
    assert "served by the SANDBOX provider" in log
    metrics = requests.get(f"http://127.0.0.1:{compose.metrics_port}/metrics", timeout=10)
    assert metrics.status_code == 200 and "aigw_" in metrics.text
    # Redis keeps the queues in an append-only file on its volume, fsynced before it answers.
    aof = compose("exec", "-T", "redis", "redis-cli", "config", "get", "appendonly", "appendfsync").stdout.split()
    assert dict(zip(aof[::2], aof[1::2], strict=True)) == {"appendonly": "yes", "appendfsync": "always"}, aof
    mounts = json.loads(docker("inspect", compose.containers("redis")[0], "--format", "{{json .Mounts}}").stdout)
    assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/data")], mounts


def test_only_loopback_is_published(compose):
    published = []
    for line in compose("ps", "--format", "json").stdout.splitlines():
        for row in json.loads(line) if line.startswith("[") else [json.loads(line)]:
            published += [p for p in row.get("Publishers") or [] if p.get("PublishedPort")]
    assert {p["URL"] for p in published} == {"127.0.0.1"}, published
    assert {p["PublishedPort"] for p in published} == {compose.port, compose.metrics_port, compose.dashboard_port}


def test_every_gateway_container_runs_read_only_under_a_bounded_restart_policy(compose):
    config = json.loads(compose("config", "--format", "json").stdout)
    for service in GATEWAY_SERVICES:
        assert config["services"][service]["restart"] == "on-failure:3", service
        assert config["services"][service]["read_only"] is True, service


def test_a_setting_error_exits_2_with_its_line(compose):
    result = compose("run", "--rm", "--no-deps", "-e", "OPENAI_API_KEY=sk-proj-real-looking", "api",
                     timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "config error: OPENAI_API_KEY: refused while the GitLab stand-in vouches for callers" in result.stderr
    assert "sk-proj-real-looking" not in result.stderr + result.stdout


def jobs_done(container: str) -> int:
    logs = docker("logs", container)
    return (logs.stdout + logs.stderr).count('"message": "job done"')


def test_one_worker_service_scales_and_the_extra_container_takes_jobs(compose):
    compose("up", "-d", "--no-recreate", "--scale", "worker-gpt-4o=2", "worker-gpt-4o")
    containers = compose.containers("worker-gpt-4o")
    assert len(containers) == 2
    wait_for(lambda: (compose.gateway.ready() or {}).get("models", {}).get("gpt-4o", {}).get("workers") == 2,
             timeout=60, interval=0.5, message="two gpt-4o workers live")
    assert len(compose.containers("worker-claude-sonnet")) == 1  # the other models' services stay as they were

    def both_took_jobs():
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda n: compose.gateway.chat(f"scaled {n}"), range(8)))
        assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
        return all(jobs_done(container) for container in containers)
    wait_for(both_took_jobs, timeout=60, interval=0.1, message="jobs done in both worker-gpt-4o containers")


def test_the_inspect_command_runs_in_the_api_container_as_the_operations_guide_says(compose):
    """docs/operations.md: `docker compose exec api python -m workers.inspect`; after the scale
    above, gpt-4o has two live workers and every other model one."""
    report = json.loads(compose("exec", "-T", "api", "python", "-m", "workers.inspect", "--json").stdout)
    assert {model: facts["workers"] for model, facts in report["models"].items()} == \
        {model: 2 if model == "gpt-4o" else 1 for model in MODELS}, report
    assert all(facts["configured"] for facts in report["models"].values())
    # The same through the proxy, for a GitLab administrator only (the stand-in's admin; alice is none).
    admin = requests.get(f"{compose.gateway.url}/admin/queues", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                         timeout=10)
    assert admin.status_code == 200, admin.text
    assert {model: facts["workers"] for model, facts in admin.json()["models"].items()} == \
        {model: facts["workers"] for model, facts in report["models"].items()}
    assert requests.get(f"{compose.gateway.url}/admin/queues", headers=AUTH, timeout=10).status_code == 403


def test_sighup_reaches_pid_1_of_the_api_and_of_a_worker_and_both_reload(compose):
    """What docs/operations.md tells an operator to run: the signal reaches gunicorn's master and
    the workers' supervisor (each PID 1 of its container, after the entrypoint's exec), each reads
    the file again, and neither container stops or restarts."""
    services = ["api", "worker-claude-sonnet"]

    def reloads(service):
        return compose("logs", service).stdout.count("configuration reloaded")

    before = {service: reloads(service) for service in services}
    containers = {service: compose.containers(service)[0] for service in services}
    restarts = {service: docker("inspect", c, "--format", "{{.RestartCount}}").stdout for service, c in
                containers.items()}
    compose("kill", "-s", "HUP", *services)
    wait_for(lambda: all(reloads(service) > before[service] for service in services), timeout=60, interval=0.5,
             message="a reload logged by the api and the worker")
    for service, container in containers.items():
        assert docker("inspect", container, "--format", "{{.State.Status}} {{.RestartCount}}").stdout.split() == \
            ["running", restarts[service].strip()], service
    answer = compose.gateway.chat("after the reload", model="claude-sonnet")
    assert answer.status_code == 200, answer.text


def test_slow_and_idle_clients_at_the_proxy_delay_nobody(compose):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))  # 600 client sockets here
    slow = SlowHeads(compose.port, SLOW, LINE_INTERVAL)
    idle = [connect(compose.port) for _ in range(IDLE)]
    try:
        time.sleep(LINE_INTERVAL + 0.5)  # every slow head has begun to trickle
        assert slow.lines >= 1
        seconds = []
        for n in range(20):
            started = time.monotonic()
            with connect(compose.port, timeout=10) as sock:
                sock.sendall(chat_request(f"not delayed {n}", close=True, model="gpt-4o"))
                answer = read_answer(sock)
            seconds.append(time.monotonic() - started)
            assert answer.status == 200, answer.body
            assert answer.json()["choices"][0]["message"]["content"] == f"Sandbox reply: not delayed {n}"
        assert max(seconds) < 3.0, seconds
        print(f"\nthrough the proxy with {SLOW} slow and {IDLE} idle connections open: median "
              f"{statistics.median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms")
    finally:
        slow.close()
        for sock in idle:
            sock.close()


def test_rq_dashboard_asks_for_its_credentials(compose):
    url = f"http://127.0.0.1:{compose.dashboard_port}/0/data/queues.json"
    wait_for(lambda: requests.get(url, timeout=3).status_code == 401 if _answers(url) else False,
             timeout=30, interval=0.5, message="rq-dashboard refusing a caller without credentials")
    answer = requests.get(url, auth=("operator", compose.password), timeout=10)
    assert answer.status_code == 200, answer.text
    assert {queue["name"] for queue in answer.json()["queues"]} >= set(MODELS)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=3)
        return True
    except requests.RequestException:
        return False


def test_a_container_that_exits_on_a_setting_is_restarted_three_times_then_left_stopped(compose, tmp_path):
    env = {**compose.env, "OPENAI_API_KEY": "sk-proj-real-looking"}  # behind the GitLab stand-in: refused
    docker("compose", "-p", compose.project, "--env-file", compose.env_file, "up", "-d", "--no-deps", "api",
           env=env, timeout=120)
    container = compose.containers("api")[0]

    def gave_up():
        state = json.loads(docker("inspect", container, "--format", "{{json .State}}").stdout)
        count = int(docker("inspect", container, "--format", "{{.RestartCount}}").stdout)
        return (state, count) if state["Status"] == "exited" and count == 3 else None
    state, _count = wait_for(gave_up, timeout=60, interval=0.5, message="api stopped after three restarts")
    assert state["ExitCode"] == 2
    time.sleep(2)  # and it stays stopped
    assert json.loads(docker("inspect", container, "--format", "{{json .State}}").stdout)["Status"] == "exited"
    logs = docker("logs", container)
    assert (logs.stdout + logs.stderr).count("config error: OPENAI_API_KEY: refused") == 4  # the start and 3 restarts


def test_down_leaves_nothing_behind(compose):
    assert any(compose.leftovers().values())
    compose("down", "-v", "--remove-orphans", "--timeout", "20")
    assert compose.leftovers() == {"containers": [], "networks": [], "volumes": []}
