"""The config file: parsing into dataclasses, one exact problem line per rule, ``check`` CLI."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import (
    ConfigError,
    GatewayConfig,
    GitLabConfig,
    JobsConfig,
    LoggingConfig,
    ModelConfig,
    RateLimit,
    Route,
    RouteMatch,
    exit_on_config_error,
    load_config,
    parse_config,
)
from shared.durations import format_duration, parse_duration

REPO_ROOT = Path(__file__).resolve().parents[2]
OPENAI_KEY = "sk-test-openai-SECRET-1234"
ANTHROPIC_KEY = "sk-ant-test-SECRET-5678"
KEYS = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
NO_ROUTES_WARNING = "no routes configured: every caller may use every model by its own name"

FULL_YAML = """
models:
  - name: "openai-gpt4"          # unique; also the name of this model's queue
    type: "openai"
    base_url: "https://api.openai.com/v1/"
    api_key: "${OPENAI_API_KEY}"
    model: "gpt-4o"
    timeout: 45s
    rate_limit:
      requests_per_minute: 1000
      tokens_per_minute: 90000
      requests_per_day: 20000
    retries: {attempts: 5}
    workers: 2
    max_queue_depth: 500
    verify_tls: false
    ca_file: CA_FILE
    max_output_tokens: 2048
  - name: claude
    type: anthropic
  - name: local-llama
    type: generic
    base_url: http://llm.internal:8000/v1
routes:
  - name: "project-123-gpt4"
    match: {gitlab_project_id: "123", model_name: "openai-gpt4"}
    destination: "openai-gpt4"
    rate_limit: {requests_per_minute: 200, per: user}
  - match: {gitlab_group_id: [7, "8"], model_name: claude}
gitlab:
  timeout: 5s
  verify_tls: false
  ca_file: CA_FILE
  min_access_level: 20
  cache_ttl: 2m
  outage_grace: 15m
jobs:
  result_ttl: 90s
  failure_ttl: 1d
logging:
  log_payloads: true
"""


def model(**fields: object) -> dict:
    return {"name": "local", "type": "generic", "base_url": "http://llm.internal:8000/v1", **fields}


def config_with(*models: dict, **top: object) -> dict:
    return {"models": list(models) or [model()], "routes": [], **top}


def problems(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {} if env is None else env)
    return info.value.problems


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    return str(path)


# --- durations ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [
    (0, 0.0), (30, 30.0), (1.5, 1.5), ("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0),
    ("1d", 86400.0), ("30", 30.0), ("1.5s", 1.5), (" 10s ", 10.0), ("250 ms", 0.25),
])
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", [
    True, False, -1, -0.5, "-1s", "", "soon", "1x", "1M", "s", "1.s", "1e3", None, [1], float("inf"),
    float("nan"), 10**400,
])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match=r"^must be a duration such as 500ms, 30s, 2m$"):
        parse_duration(value)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.5, "500ms"), (0.25, "250ms"), (30, "30s"), (120, "2m"), (90, "90s"), (1.5, "1.5s"),
    (3600, "1h"), (5400, "90m"), (86400, "1d"), (1234567, "1234567s"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# --- a valid file --------------------------------------------------------------------------------

def test_full_documented_file_parses(tmp_path: Path, ca_file: str) -> None:
    path = write(tmp_path, FULL_YAML.replace("CA_FILE", ca_file))
    config = load_config(str(path), KEYS)
    gpt, claude, local = config.models
    assert gpt == ModelConfig(
        name="openai-gpt4", type="openai", base_url="https://api.openai.com/v1", api_key=OPENAI_KEY,
        model="gpt-4o", timeout=45.0,
        rate_limit=RateLimit(requests_per_minute=1000, tokens_per_minute=90000, requests_per_day=20000),
        retry_attempts=5, workers=2, max_queue_depth=500, verify_tls=False, ca_file=ca_file,
        max_output_tokens=2048,
    )
    assert claude == ModelConfig(name="claude", type="anthropic", base_url="https://api.anthropic.com/v1",
                                 api_key=ANTHROPIC_KEY, model="claude")
    assert local.api_key is None and local.base_url == "http://llm.internal:8000/v1"
    assert config.routes == (
        Route("project-123-gpt4", RouteMatch(gitlab_project_id=("123",), model_name=("openai-gpt4",)),
              "openai-gpt4", RateLimit(requests_per_minute=200, per="user")),
        Route("route-1", RouteMatch(gitlab_group_id=("7", "8"), model_name=("claude",)), None, RateLimit()),
    )
    assert config.routes_configured is True
    assert config.gitlab == GitLabConfig(timeout=5.0, verify_tls=False, ca_file=ca_file, min_access_level=20,
                                         cache_ttl=120.0, outage_grace=900.0)
    assert config.jobs == JobsConfig(result_ttl=90.0, failure_ttl=86400.0)
    assert config.logging == LoggingConfig(log_payloads=True)
    assert config.warnings == ()
    assert config.model("claude") is claude and config.model("nope") is None
    assert config.max_timeout == 45.0


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load_config(str(write(tmp_path, "models:\n  - {name: gpt, type: openai}\n")), KEYS)
    assert config.models == (ModelConfig(name="gpt", type="openai", base_url="https://api.openai.com/v1",
                                         api_key=OPENAI_KEY, model="gpt"),)
    gpt = config.models[0]
    assert (gpt.timeout, gpt.retry_attempts, gpt.workers, gpt.max_queue_depth) == (30.0, 3, 1, 1000)
    assert (gpt.verify_tls, gpt.ca_file, gpt.max_output_tokens) == (True, None, 1024)
    assert gpt.rate_limit.is_empty()
    assert config.routes == () and config.routes_configured is False
    assert (config.gitlab, config.jobs, config.logging) == (GitLabConfig(), JobsConfig(), LoggingConfig())
    assert config.gitlab.outage_grace == 900.0 and config.jobs.failure_ttl == 86400.0
    assert config.warnings == (NO_ROUTES_WARNING,)


def test_empty_routes_list_counts_as_configured() -> None:
    config = parse_config(config_with(routes=[]), {})
    assert config.routes_configured is True and config.warnings == ()


def test_rate_limit_is_empty_ignores_per() -> None:
    assert RateLimit(per="user").is_empty() and not RateLimit(tokens_per_minute=5).is_empty()


def test_max_timeout_is_largest_model_timeout() -> None:
    config = parse_config(config_with(model(name="a", timeout="2m"), model(name="b", timeout=5)), {})
    assert config.max_timeout == 120.0


def test_route_match_values_become_string_tuples() -> None:
    data = config_with(routes=[{"match": {"gitlab_user_id": 42, "gitlab_project_id": [1, " 2 ", "x/y"]}},
                               {"name": "alias", "match": {"model_name": "gpt-4"}, "destination": "local"}])
    first, alias = parse_config(data, {}).routes
    assert first.match == RouteMatch(gitlab_project_id=("1", "2", "x/y"), gitlab_user_id=("42",))
    assert first.name == "route-0" and first.destination is None
    assert alias.match.model_name == ("gpt-4",) and alias.destination == "local"


# --- secrets -----------------------------------------------------------------------------------

def test_repr_never_shows_api_key() -> None:
    config = parse_config({"models": [{"name": "gpt", "type": "openai"}], "routes": []}, KEYS)
    assert config.models[0].api_key == OPENAI_KEY
    assert OPENAI_KEY not in repr(config.models[0])
    assert OPENAI_KEY not in repr(config) and "gpt" in repr(config)


def test_api_key_defaults_per_type() -> None:
    data = config_with(model(name="o", type="openai"), model(name="a", type="anthropic"), model(name="g"))
    o, a, g = parse_config(data, KEYS).models
    assert (o.api_key, a.api_key) == (OPENAI_KEY, ANTHROPIC_KEY)
    assert g.api_key is None  # a private server never receives the OpenAI key


def test_api_key_missing_everywhere_is_a_warning() -> None:
    data = config_with(model(name="gpt", type="openai"), model(name="claude", type="anthropic"))
    config = parse_config(data, {"ANTHROPIC_API_KEY": ""})
    assert [m.api_key for m in config.models] == [None, None]
    tail = "is not set; requests will be sent without a key"
    assert config.warnings == (
        f"models[0] (gpt): no api_key and OPENAI_API_KEY {tail}",
        f"models[1] (claude): no api_key and ANTHROPIC_API_KEY {tail}",
    )


def test_explicit_api_key_wins_and_empty_means_no_key() -> None:
    data = config_with(model(name="a", type="openai", api_key="literal"),
                       model(name="b", type="openai", api_key=""))
    config = parse_config(data, KEYS)
    assert [m.api_key for m in config.models] == ["literal", None]
    assert config.warnings == ()


# --- ${VAR} substitution -----------------------------------------------------------------------

def test_env_substitution_in_every_string() -> None:
    env = {**KEYS, "HOST": "llm.internal", "T": "2m", "W": "4", "TLS": "off", "PROJECT": "99", "LVL": "40"}
    data = config_with(model(base_url="https://${HOST}:8443/v1", api_key="Bearer ${OPENAI_API_KEY}",
                             timeout="${T}", workers="${W}", verify_tls="${TLS}"),
                       routes=[{"match": {"gitlab_project_id": ["${PROJECT}", 5]}}],
                       gitlab={"min_access_level": "${LVL}"})
    config = parse_config(data, env)
    local = config.models[0]
    assert local.base_url == "https://llm.internal:8443/v1" and local.api_key == f"Bearer {OPENAI_KEY}"
    assert (local.timeout, local.workers, local.verify_tls) == (120.0, 4, False)
    assert type(local.api_key) is str
    assert config.routes[0].match.gitlab_project_id == ("99", "5")
    assert config.gitlab.min_access_level == 40


def test_missing_env_var_is_reported_once() -> None:
    data = config_with(model(timeout="${T}", api_key="${KEY}"))
    assert problems(data, {"KEY": ""}) == [
        "models[0].timeout: environment variable T is not set",
        "models[0].api_key: environment variable KEY is not set",
    ]


def test_env_default_applies_when_unset_or_empty() -> None:
    data = config_with(model(name="a", base_url="${URL:-http://fallback:1/v1}"),
                       model(name="b", base_url="${URL2:-http://fallback:2/v1}"))
    a, b = parse_config(data, {"URL": "", "URL2": "https://set.example/v1"}).models
    assert (a.base_url, b.base_url) == ("http://fallback:1/v1", "https://set.example/v1")


def test_invalid_env_reference() -> None:
    assert problems(config_with(model(api_key="${1X}"))) == [
        "models[0].api_key: invalid environment variable reference '${1X}'"]


def test_env_string_that_is_not_a_number_is_still_rejected() -> None:
    assert problems(config_with(model(workers="${W}")), {"W": "lots"}) == [
        "models[0].workers: must be an integer, got 'lots'"]


# --- one rule, one problem line ----------------------------------------------------------------

CA_MISSING = "/nonexistent/ca.pem"
ID_TYPE = "must be a string, an integer or a non-empty list of them,"
RULES = {
    # unknown keys, at every level
    "top-key": ({**config_with(), "modles": []}, "modles: unknown key"),
    "model-key": (config_with(model(url="x")), "models[0].url: unknown key"),
    "retries-key": (config_with(model(retries={"attempts": 2, "backoff": 1})),
        "models[0].retries.backoff: unknown key"),
    "rate-key": (config_with(model(rate_limit={"rpm": 1})), "models[0].rate_limit.rpm: unknown key"),
    "route-key": (config_with(routes=[{"to": "local"}]), "routes[0].to: unknown key"),
    "match-key": (config_with(routes=[{"match": {"user": "1"}}]), "routes[0].match.user: unknown key"),
    "gitlab-key": (config_with(gitlab={"url": "x"}), "gitlab.url: unknown key"),
    "jobs-key": (config_with(jobs={"ttl": 1}), "jobs.ttl: unknown key"),
    "logging-key": (config_with(logging={"level": "info"}), "logging.level: unknown key"),
    # models
    "models-missing": ({"routes": []}, "models: required"),
    "models-empty": ({"models": [], "routes": []}, "models: must be a non-empty list of models, got a list"),
    "models-not-list": ({"models": {"a": 1}, "routes": []},
        "models: must be a non-empty list of models, got a mapping"),
    "model-not-mapping": (config_with("gpt"), "models[0]: must be a mapping, got 'gpt'"),
    "name-missing": (config_with({"type": "generic", "base_url": "http://x"}), "models[0].name: required"),
    "name-space": (config_with(model(name="my model")),
        "models[0].name: must be 1-100 letters, digits, '.', '_' or '-'"),
    "name-colon": (config_with(model(name="rq:queue")),
        "models[0].name: must be 1-100 letters, digits, '.', '_' or '-'"),
    "name-long": (config_with(model(name="a" * 101)),
        "models[0].name: must be 1-100 letters, digits, '.', '_' or '-'"),
    "name-number": (config_with(model(name=5)), "models[0].name: must be a string, got 5"),
    "name-duplicate": (config_with(model(name="x"), model(name="y"), model(name="x")),
        "models[2].name: duplicate model name 'x' (also models[0])"),
    "type-missing": (config_with({"name": "a"}), "models[0].type: required"),
    "type-unknown": (config_with(model(), model(name="b", type="azure")),
        "models[1].type: must be one of openai, anthropic, vertex, generic"),
    "vertex-project": (config_with(model(type="vertex")),
        "models[0].project: required for vertex models"),
    "vertex-keys-elsewhere": (config_with(model(project="p")),
        "models[0].project: only vertex models take this key"),
    "stream-idle-garbage": (config_with(model(stream_idle_timeout="later")),
        "models[0].stream_idle_timeout: must be a duration such as 500ms, 30s, 2m"),
    "base-url-scheme": (config_with(model(base_url="ftp://x")),
        "models[0].base_url: must be an http or https URL, got 'ftp://x'"),
    "base-url-generic": (config_with({"name": "a", "type": "generic"}),
        "models[0].base_url: required for generic models"),
    "timeout-garbage": (config_with(model(timeout="soon")),
        "models[0].timeout: must be a duration such as 500ms, 30s, 2m"),
    "timeout-bool": (config_with(model(timeout=True)),
        "models[0].timeout: must be a duration such as 500ms, 30s, 2m"),
    "timeout-zero": (config_with(model(timeout=0)),
        "models[0].timeout: must be greater than 0 and at most 1h, got 0s"),
    "timeout-long": (config_with(model(timeout="61m")),
        "models[0].timeout: must be greater than 0 and at most 1h, got 61m"),
    "attempts-low": (config_with(model(retries={"attempts": 0})),
        "models[0].retries.attempts: must be an integer between 1 and 10, got 0"),
    "attempts-high": (config_with(model(retries={"attempts": 11})),
        "models[0].retries.attempts: must be an integer between 1 and 10, got 11"),
    "retries-not-mapping": (config_with(model(retries=3)), "models[0].retries: must be a mapping, got 3"),
    "workers-word": (config_with(model(workers="two")), "models[0].workers: must be an integer, got 'two'"),
    "workers-bool": (config_with(model(workers=True)), "models[0].workers: must be an integer, got true"),
    "workers-float": (config_with(model(workers=2.5)), "models[0].workers: must be an integer, got 2.5"),
    "workers-high": (config_with(model(workers=257)),
        "models[0].workers: must be an integer between 0 and 256, got 257"),
    "workers-negative": (config_with(model(workers=-1)),
        "models[0].workers: must be an integer between 0 and 256, got -1"),
    "queue-depth": (config_with(model(max_queue_depth=0)),
        "models[0].max_queue_depth: must be a positive integer, got 0"),
    "output-tokens": (config_with(model(max_output_tokens=0)),
        "models[0].max_output_tokens: must be a positive integer, got 0"),
    "verify-tls-number": (config_with(model(verify_tls=1)),
        "models[0].verify_tls: must be true or false, got 1"),
    "verify-tls-string": (config_with(model(verify_tls="yes")),
        "models[0].verify_tls: must be true or false, got 'yes'"),
    "ca-file": (config_with(model(ca_file=CA_MISSING)), f"models[0].ca_file: file not found: {CA_MISSING}"),
    "api-key-type": (config_with(model(api_key=123)), "models[0].api_key: must be a string, got 123"),
    # rate limits
    "rate-zero": (config_with(model(rate_limit={"requests_per_minute": 0})),
        "models[0].rate_limit.requests_per_minute: must be a positive integer, got 0"),
    "rate-word": (config_with(model(rate_limit={"tokens_per_minute": "many"})),
        "models[0].rate_limit.tokens_per_minute: must be an integer, got 'many'"),
    "rate-not-mapping": (config_with(model(rate_limit=100)),
        "models[0].rate_limit: must be a mapping, got 100"),
    "rate-per-on-model": (config_with(model(rate_limit={"requests_per_day": 5, "per": "user"})),
        "models[0].rate_limit.per: only routes can limit per user or project"),
    "rate-per-unknown": (config_with(routes=[{"rate_limit": {"per": "team"}}]),
        "routes[0].rate_limit.per: must be one of user, project"),
    # routes
    "routes-not-list": (config_with(routes={"a": 1}), "routes: must be a list of routes, got a mapping"),
    "route-duplicate": (config_with(routes=[{"name": "r"}, {"name": "r"}]),
        "routes[1].name: duplicate route name 'r' (also routes[0])"),
    "route-default-name-clash": (config_with(routes=[{"name": "route-1"}, {}]),
        "routes[1].name: duplicate route name 'route-1' (also routes[0])"),
    "route-name-type": (config_with(routes=[{"name": ["a"]}]),
        "routes[0].name: must be a string, got a list"),
    "match-not-mapping": (config_with(routes=[{"match": "all"}]),
        "routes[0].match: must be a mapping, got 'all'"),
    "match-empty-string": (config_with(routes=[{"match": {"gitlab_project_id": ""}}]),
        "routes[0].match.gitlab_project_id: must not be empty"),
    "match-empty-list": (config_with(routes=[{"match": {"gitlab_group_id": []}}]),
        "routes[0].match.gitlab_group_id: must not be an empty list"),
    "match-mapping": (config_with(routes=[{"match": {"gitlab_group_id": {"id": 1}}}]),
        f"routes[0].match.gitlab_group_id: {ID_TYPE} got a mapping"),
    "match-list-bool": (config_with(routes=[{"match": {"gitlab_user_id": ["1", True]}}]),
        f"routes[0].match.gitlab_user_id[1]: {ID_TYPE} got true"),
    "destination-unknown": (config_with(routes=[{"destination": "gpt"}]),
        "routes[0].destination: 'gpt' is not a configured model"),
    "model-name-unknown": (config_with(routes=[{"match": {"model_name": ["local", "gpt"]}}]),
        "routes[0].match.model_name: 'gpt' is not a configured model; "
        "give the route a destination to make it an alias"),
    # gitlab, jobs, logging
    "access-level": (config_with(gitlab={"min_access_level": 35}),
        "gitlab.min_access_level: must be one of 10, 20, 30, 40, 50"),
    "access-level-string": (config_with(gitlab={"min_access_level": "30"}),
        "gitlab.min_access_level: must be one of 10, 20, 30, 40, 50"),
    "gitlab-timeout": (config_with(gitlab={"timeout": "0s"}),
        "gitlab.timeout: must be greater than 0, got 0s"),
    "gitlab-cache-ttl": (config_with(gitlab={"cache_ttl": "-1s"}),
        "gitlab.cache_ttl: must be a duration such as 500ms, 30s, 2m"),
    "gitlab-local-cache-ttl": (config_with(gitlab={"local_cache_ttl": "soon"}),
        "gitlab.local_cache_ttl: must be a duration such as 500ms, 30s, 2m"),
    "gitlab-grace": (config_with(gitlab={"outage_grace": -5}),
        "gitlab.outage_grace: must be a duration such as 500ms, 30s, 2m"),
    "gitlab-verify-tls": (config_with(gitlab={"verify_tls": "false"}),
        "gitlab.verify_tls: must be true or false, got 'false'"),
    "gitlab-ca-file": (config_with(gitlab={"ca_file": CA_MISSING}),
        f"gitlab.ca_file: file not found: {CA_MISSING}"),
    "gitlab-not-mapping": (config_with(gitlab=[1]), "gitlab: must be a mapping, got a list"),
    "result-ttl": (config_with(jobs={"result_ttl": "500ms"}),
        "jobs.result_ttl: must be at least 1s, got 500ms"),
    "failure-ttl": (config_with(jobs={"failure_ttl": 0}), "jobs.failure_ttl: must be at least 1s, got 0s"),
    "log-payloads": (config_with(logging={"log_payloads": 0}),
        "logging.log_payloads: must be true or false, got 0"),
    "top-not-mapping": (["models"], "config: the top level must be a mapping, got a list"),
    "empty-document": (None, "models: required"),
}


@pytest.mark.parametrize(("data", "expected"), list(RULES.values()), ids=list(RULES))
def test_each_rule_reports_exactly_one_line(data: object, expected: str) -> None:
    assert problems(data) == [expected]


def test_all_problems_are_reported_together() -> None:
    data = {
        "models": [model(name="bad name", workers="two"), model(name="b", type="azure"), model(timeout="x")],
        "routes": [{"destination": "nope", "extra": 1}],
        "gitlab": {"min_access_level": 1},
        "jobs": {"result_ttl": 0},
        "verbose": True,
    }
    assert problems(data) == [
        "verbose: unknown key",
        "models[0].name: must be 1-100 letters, digits, '.', '_' or '-'",
        "models[0].workers: must be an integer, got 'two'",
        "models[1].type: must be one of openai, anthropic, vertex, generic",
        "models[2].timeout: must be a duration such as 500ms, 30s, 2m",
        "routes[0].extra: unknown key",
        "routes[0].destination: 'nope' is not a configured model",
        "gitlab.min_access_level: must be one of 10, 20, 30, 40, 50",
        "jobs.result_ttl: must be at least 1s, got 0s",
    ]


def test_config_error_message_is_one_line_per_problem() -> None:
    error = ConfigError(["a: x", "b: y"])
    assert str(error) == "a: x\nb: y" and error.problems == ["a: x", "b: y"]


# --- reading files -----------------------------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.problems == [f"{path}: cannot read config file (No such file or directory)"]


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    type: [openai\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    [line] = info.value.problems
    assert line.startswith(f"{path}: invalid YAML at line 4 column 1: ")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: a\n    type: openai\n    type: generic\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.problems == [f"{path}: invalid YAML at line 4 column 5: duplicate key 'type'"]


def test_empty_file_and_non_mapping_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(write(tmp_path, "# nothing yet\n")), {})
    assert info.value.problems == ["models: required"]
    path = write(tmp_path, "- a\n- b\n", "list.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), {})
    assert info.value.problems == [f"{path}: the top level must be a mapping, got a list"]


def test_exit_on_config_error_prints_and_exits_2() -> None:
    out = io.StringIO()
    with pytest.raises(SystemExit) as info:
        exit_on_config_error(["models: required", "gitlab: unknown key"], stream=out)
    assert info.value.code == 2
    assert out.getvalue() == "config error: models: required\nconfig error: gitlab: unknown key\n"


def test_gateway_config_can_be_built_directly() -> None:
    config = GatewayConfig(models=())
    assert config.max_timeout == 30.0 and config.model("x") is None


# --- python -m shared.config check -------------------------------------------------------------

def run_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CONFIG_FILE_PATH", *KEYS)}
    return subprocess.run([sys.executable, "-m", "shared.config", "check", *args], cwd=REPO_ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_check_good_file_prints_summary_without_key(tmp_path: Path, ca_file: str) -> None:
    path = write(tmp_path, FULL_YAML.replace("CA_FILE", ca_file))
    result = run_check(str(path), env=KEYS)
    assert result.returncode == 0, result.stderr
    summary = "openai-gpt4: type openai, base_url https://api.openai.com/v1, upstream model gpt-4o"
    assert summary in result.stdout
    assert "local-llama" in result.stdout and "project-123-gpt4" in result.stdout
    assert "api key: set" in result.stdout and "api key: not set" in result.stdout
    assert "200 requests/min per user" in result.stdout
    assert OPENAI_KEY not in result.stdout + result.stderr
    assert ANTHROPIC_KEY not in result.stdout + result.stderr


def test_check_reads_config_file_path_and_prints_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - {name: gpt, type: openai}\n")
    result = run_check(env={"CONFIG_FILE_PATH": str(path)})
    assert result.returncode == 0, result.stderr
    assert "gpt" in result.stdout and "api key: not set" in result.stdout
    assert NO_ROUTES_WARNING in result.stdout


def test_check_bad_file_exits_2_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: gpt\n    type: openai\n    workers: two\nextra: 1\n")
    result = run_check(str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["config error: extra: unknown key",
                                          "config error: models[0].workers: must be an integer, got 'two'"]
    assert "Traceback" not in result.stderr + result.stdout


def test_check_missing_file_exits_2(tmp_path: Path) -> None:
    result = run_check(str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read config file" in result.stderr
    assert "Traceback" not in result.stderr
