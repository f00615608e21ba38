"""The container files agree with the rest of the repository, and the entry point's settling of
the stand-ins (tools/container/entrypoint.py) does what the README says, without an engine;
``make test-container`` runs them all for real."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from sandbox.gitlab import ADMIN_TOKEN
from shared.config import load_config
from shared.config_parse import SANDBOX_PROVIDER_ENV
from shared.settings import _VARIABLES
from tools.container.entrypoint import KEY_HELD_BY_THE_WORKERS, settle

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_has_one_worker_service_per_model_of_the_example_config():
    models = [model.name for model in load_config(str(ROOT / "config" / "example.yaml"), {}).models]
    services = compose()["services"]
    workers = {name: service["command"] for name, service in services.items() if name.startswith("worker-")}
    assert workers == {f"worker-{model}": ["python", "-m", "workers", model] for model in models}
    # ... and the GitLab network's override attaches every one of them, beside the API.
    attached = yaml.safe_load((ROOT / "compose.gitlab-network.yaml").read_text())["services"]
    assert set(attached) == {"api", "proxy", *workers}


def test_the_image_copies_every_package_the_processes_import():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) \./", dockerfile, re.M))
    assert {"api", "shared", "workers", "config", "sandbox", "tools", "requirements.txt"} <= copied
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert not copied & set(ignored)
    assert ".env*" in ignored and ".cache" in ignored


def _dockerignore_pattern(pattern: str) -> re.Pattern:
    """A .dockerignore line as Docker reads it (moby's patternmatcher: filepath.Match per path
    segment, ``**`` any number of directories); it also excludes everything under a match."""
    regex = ""
    for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/")):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(regex + "(?:/.*)?")


def sent_to_the_builder(path: str) -> bool:
    """Whether ``docker build`` sends ``path`` (relative to the context): the last matching line of
    .dockerignore decides, a ``!`` line letting the path in again."""
    sent = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            exception = line.startswith("!")
            if _dockerignore_pattern(line.lstrip("!")).fullmatch(path):
                sent = exception
    return sent


@pytest.mark.parametrize("path", [
    "config/production.yaml", "config/config.yaml", "config/prod.yml", "config/.env", "config/vertex-sa.json",
    "config.yaml", ".env", ".env.production", "tools/.env.local", "api/.env",
    "tls.key", "config/tls.key", "tools/container/server.pem", "shared/ca.crt", "deploy/kubernetes/secret.yaml",
    "gitlab-secrets.txt", "api/client.p12",
])
def test_dockerignore_keeps_secret_looking_files_and_real_configs_out_of_the_image(path):
    assert not sent_to_the_builder(path)


@pytest.mark.parametrize("path", [
    "config/gunicorn.conf.py", "config/example.yaml", "api/app.py", "shared/keys.py", "workers/__main__.py",
    "sandbox/gitlab.py", "tools/container/entrypoint.py", "tools/rq_dashboard.py", "Procfile",
    "requirements.txt", "requirements-dev.txt",
])
def test_dockerignore_sends_what_the_dockerfile_copies(path):
    assert sent_to_the_builder(path)


def test_every_file_the_dockerfile_copies_is_sent_to_the_builder():
    """No file under a COPY'd directory the image needs is held back (a real config or key would
    be, and belongs in a mount or a Secret, not in the image)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (\S+) ", dockerfile, re.M)
    tracked = subprocess.run(["git", "ls-files", "--", *copied], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked
    assert [path for path in tracked if not sent_to_the_builder(path)] == []


def test_a_fresh_clone_uses_the_standins():
    env = {"STANDIN_URL": "http://standins", "LOG_DIR": ""}
    assert settle(env, ["gunicorn"]) == []
    assert env["GITLAB_URL"] == "http://standins:8001" and env["GITLAB_API_TOKEN"] == ADMIN_TOKEN
    assert env["OPENAI_BASE_URL"] == env["ANTHROPIC_BASE_URL"] == "http://standins:8000/v1"
    assert env[SANDBOX_PROVIDER_ENV] == "http://standins:8000"


def test_the_real_gitlab_and_keys_leave_the_standins_out():
    env = {"STANDIN_URL": "http://standins", "GITLAB_URL": "https://gitlab.example.com", "GITLAB_API_TOKEN": "t",
           "OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2", "PUBLISHED_ADDRESS": "0.0.0.0"}
    before = dict(env)
    assert settle(env, ["python", "-m", "workers"]) == []
    assert env == before


def test_one_real_key_beside_the_real_gitlab_sandboxes_only_the_other_provider():
    env = {"STANDIN_URL": "http://standins", "GITLAB_URL": "https://gitlab.example.com", "OPENAI_API_KEY": "sk-1"}
    assert settle(env, ["gunicorn"]) == []
    assert "OPENAI_BASE_URL" not in env and env["ANTHROPIC_BASE_URL"] == "http://standins:8000/v1"


def test_a_real_key_or_an_open_address_behind_the_gitlab_standin_is_refused_by_name_only():
    env = {"STANDIN_URL": "http://standins", "OPENAI_API_KEY": "sk-secret-value", "PUBLISHED_ADDRESS": "0.0.0.0"}
    problems = settle(env, ["gunicorn"])
    assert [problem.split(":")[0] for problem in problems] == ["OPENAI_API_KEY", "PUBLISHED_ADDRESS"]
    assert not any("sk-secret-value" in problem for problem in problems)
    assert settle({"STANDIN_URL": "http://standins", "PUBLISHED_ADDRESS": "::1"}, ["gunicorn"]) == []


def test_rq_dashboard_needs_its_credentials():
    command = ["python", "-m", "tools.rq_dashboard"]
    assert [p.split(":")[0] for p in settle({}, command)] == ["RQ_DASHBOARD_USERNAME", "RQ_DASHBOARD_PASSWORD"]
    assert settle({"RQ_DASHBOARD_USERNAME": "u", "RQ_DASHBOARD_PASSWORD": "p"}, command) == []


def test_without_standin_url_nothing_is_invented():
    env = {}
    assert settle(env, ["gunicorn"]) == []
    assert env == {}  # the gateway's own checks then name GITLAB_URL and GITLAB_API_TOKEN (exit 2)


def test_every_variable_compose_reads_is_documented():
    """Each ${VAR} of the compose files is in the README's table of compose's variables (or, for
    the gateway's own settings, its configuration reference), and in .env.example."""
    read = set()
    for name in ("compose.yaml", "compose.gitlab-network.yaml"):
        read |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (ROOT / name).read_text()))
    readme = (ROOT / "README.md").read_text()
    compose_table = readme.split("Compose's own variables", 1)[1].split("\n\n", 2)[1]
    environment = readme.split("### Environment", 1)[1].split("\n\n", 2)[1]
    first_cells = re.findall(r"^\| ([^|]*) \|", compose_table, re.M)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Z_][A-Z0-9_]*)`", cell)}
    gateway_settings = set(re.findall(r"`([A-Z_][A-Z0-9_]*)`", environment))
    assert read - documented - gateway_settings == set()
    # The gateway's own settings compose reads to keep a default of the image's or to pass on whether set.
    assert read - documented <= {"GITLAB_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LOG_FORMAT", "LOG_DIR"}
    example = set(re.findall(r"^# ([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert read - example == set()


GATEWAY_SERVICES_WITH_SECRETS = ("api", "worker-gpt-4o", "worker-claude-sonnet", "worker-claude-opus-5-5",
                                 "worker-gpt-6.2-sol")
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def _passes(environment: dict, variable: str) -> bool:
    """Whether a service's ``environment:`` hands ``variable``'s value from .env or the shell to
    the container: by name (no value), or in a ``${...}`` that substitutes it (``:+`` does not)."""
    if variable in environment and environment[variable] is None:
        return True
    return any(re.search(r"\$\{" + variable + r"(?:\}|:?-)", str(value)) for value in environment.values())


def test_no_gateway_container_gets_the_whole_env_file():
    """.env holds GitLab's token and the provider keys: an env_file would give every one of them to
    every container. Each service names what it reads instead."""
    for name, service in compose()["services"].items():
        assert "env_file" not in service, name


def test_the_workers_get_the_provider_keys_and_no_gitlab_token_the_api_the_reverse():
    services = compose()["services"]
    api = services["api"]["environment"]
    assert _passes(api, "GITLAB_API_TOKEN")
    assert not any(_passes(api, key) or key in api for key in PROVIDER_KEYS)
    assert all(api[f"{key}_SET"] == f"${{{key}:+yes}}" for key in PROVIDER_KEYS)  # whether set, never the key
    for name in GATEWAY_SERVICES_WITH_SECRETS[1:]:
        worker = services[name]["environment"]
        assert all(_passes(worker, key) for key in PROVIDER_KEYS), name
        assert not any("GITLAB_API_TOKEN" in f"{variable}={value}" for variable, value in worker.items()), name
    assert not any("_API_KEY" in f"{variable}={value}" and not variable.endswith("_SET")
                   for variable, value in services["standins"]["environment"].items())


def test_every_setting_of_the_configuration_reference_reaches_a_container_that_reads_it():
    """Without env_file, a setting of .env reaches a container only by name: each of the
    configuration reference's settings reaches the API or the workers."""
    services = compose()["services"]
    passed = {variable for name in GATEWAY_SERVICES_WITH_SECRETS
              for variable, value in services[name]["environment"].items()
              if value is None or "${" in str(value) or variable in ("REDIS_URL", "FORWARDED_ALLOW_IPS")}
    fixed_by_the_image_or_compose = {"PORT", "HOST", "METRICS_PORT", "CONFIG_FILE_PATH", "WORKER_MODELS",
                                     "WORKER_METRICS_PORT"}
    assert {variable for _name, variable, _parse in _VARIABLES} - fixed_by_the_image_or_compose - passed == set()


def test_a_key_the_workers_hold_counts_as_set_in_the_api_without_being_there():
    env = {"STANDIN_URL": "http://standins", "GITLAB_URL": "https://gitlab.example.com", "LOG_DIR": "",
           "OPENAI_API_KEY_SET": "yes", "ANTHROPIC_API_KEY_SET": ""}
    assert settle(env, ["gunicorn"]) == []
    assert "OPENAI_BASE_URL" not in env and env["ANTHROPIC_BASE_URL"] == "http://standins:8000/v1"
    assert env["OPENAI_API_KEY"] == KEY_HELD_BY_THE_WORKERS and "ANTHROPIC_API_KEY" not in env
    problems = settle({"STANDIN_URL": "http://standins", "OPENAI_API_KEY_SET": "yes"}, ["gunicorn"])
    assert [problem.split(":")[0] for problem in problems] == ["OPENAI_API_KEY"]  # behind the stand-in


def test_the_gitlab_network_override_trusts_only_the_proxys_fixed_address():
    """On GitLab's network anything can reach the API's port directly: X-Forwarded-For is believed
    from the proxy's fixed address on the stack's own network alone, and the proxy connects to
    the API by a name that exists on that network only."""
    override = yaml.safe_load((ROOT / "compose.gitlab-network.yaml").read_text())
    default = re.fullmatch(r"\$\{GATEWAY_PROXY_ADDRESS:-([0-9.]+)\}",
                           override["services"]["proxy"]["networks"]["default"]["ipv4_address"]).group(1)
    subnet = re.fullmatch(r"\$\{GATEWAY_SUBNET:-([0-9./]+)\}",
                          override["networks"]["default"]["ipam"]["config"][0]["subnet"]).group(1)
    dynamic = re.fullmatch(r"\$\{GATEWAY_IP_RANGE:-([0-9./]+)\}",
                           override["networks"]["default"]["ipam"]["config"][0]["ip_range"]).group(1)
    # Inside the subnet, outside the range Docker hands the other containers' addresses from (a
    # container created first would otherwise take it, and the proxy's start fail).
    assert ipaddress.ip_address(default) in ipaddress.ip_network(subnet)
    assert ipaddress.ip_network(dynamic).subnet_of(ipaddress.ip_network(subnet))
    assert ipaddress.ip_address(default) not in ipaddress.ip_network(dynamic)
    api = override["services"]["api"]
    assert api["environment"]["FORWARDED_ALLOW_IPS"] == override["services"]["proxy"]["networks"]["default"][
        "ipv4_address"]
    assert api["networks"]["default"]["aliases"] == ["gateway-api"] and not api["networks"]["gitlab-network"]
    assert compose()["services"]["api"]["networks"]["default"]["aliases"] == ["gateway-api"]
    assert "set $api gateway-api:8080;" in (ROOT / "deploy" / "proxy" / "nginx.conf").read_text()


def test_rq_dashboard_starts_with_deleting_disabled():
    """Its actions have no CSRF protection; rq-dashboard 0.9's one switch is --disable-delete."""
    assert "--disable-delete" in compose()["services"]["rq-dashboard"]["command"]
    assert re.search(r'^CMD \["python", "-m", "tools.rq_dashboard".*"--disable-delete"\]$',
                     (ROOT / "Dockerfile").read_text(), re.M)


def test_the_prometheus_config_scrapes_what_compose_runs():
    """deploy/prometheus/prometheus.yml: its rule files exist, the API target is compose's `api` on
    its metrics port, and the workers' job names every worker service of compose.yaml."""
    path = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    prometheus = yaml.safe_load(path.read_text())
    assert all((path.parent / rule).is_file() for rule in prometheus["rule_files"])
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    services = compose()["services"]
    [web] = jobs["ai-gateway"]["static_configs"]
    assert web["targets"] == ["api:9090"] and "api" in services
    [workers] = jobs["ai-gateway-workers"]["dns_sd_configs"]
    assert sorted(workers["names"]) == sorted(name for name in services if name.startswith("worker-"))
    assert {services[name]["environment"]["WORKER_METRICS_PORT"] for name in workers["names"]} == \
        {str(workers["port"])}


def test_make_test_container_without_an_engine_says_so_and_exits_2(monkeypatch, capsys):
    """Where no engine answers and none can be provisioned (not root, or no apt), the target says
    why and exits non-zero; it builds and tests nothing."""
    from tools.container import __main__ as target
    from tools.container import engine

    monkeypatch.setattr(engine, "server_version", lambda: None)
    monkeypatch.setattr(engine, "why_not_provisionable", lambda: "provisioning one needs root")
    monkeypatch.setattr(target, "build_images", lambda bases: pytest.fail("built without an engine"))
    assert target.main(["test"]) == 2
    out = capsys.readouterr().out
    assert "no Docker engine answers" in out and "provisioning one needs root" in out
