"""Parsing a valid config file into dataclasses: defaults, routes, API keys and ``${VAR}`` substitution."""

from __future__ import annotations

from pathlib import Path

from shared.config import (
    GatewayConfig,
    GitLabConfig,
    JobsConfig,
    LoggingConfig,
    ModelConfig,
    RateLimit,
    Route,
    RouteMatch,
    load_config,
    parse_config,
)
from tests.unit.config_fixtures import (
    ANTHROPIC_KEY,
    FULL_YAML,
    KEYS,
    NO_ROUTES_WARNING,
    OPENAI_KEY,
    config_with,
    model,
    problems,
    write,
)

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
        max_output_tokens=2048, native_responses_api=True,
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
                                         api_key=OPENAI_KEY, model="gpt", native_responses_api=True),)
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


def test_gateway_config_can_be_built_directly() -> None:
    config = GatewayConfig(models=())
    assert config.max_timeout == 30.0 and config.model("x") is None


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


def test_no_key_warning_for_a_model_the_sandbox_provider_serves() -> None:
    # make run (tools/run.py) names the sandbox provider it started: its models need no key.
    sandbox = "http://127.0.0.1:4012"
    data = config_with(model(name="gpt", type="openai", base_url=f"{sandbox}/v1"),
                       model(name="claude", type="anthropic", base_url=sandbox),
                       model(name="elsewhere", type="openai", base_url="http://127.0.0.1:40123/v1"))  # not under it
    config = parse_config(data, {"AIGW_SANDBOX_PROVIDER_URL": sandbox + "/"})
    assert config.warnings == ("models[2] (elsewhere): no api_key and OPENAI_API_KEY is not set; "
                               "requests will be sent without a key",)


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


def test_an_api_key_no_header_can_carry_is_refused_by_where_it_came_from_never_shown() -> None:
    # A key read from a file keeps its newline: every call failed, and http.client's error, which the
    # worker logged with its traceback, quoted the header, key and all.
    data = config_with(model(name="a", type="openai", api_key="sk-SECRET-A\n"),
                       model(name="b", type="openai"),
                       {"name": "c", "deployments": [{"name": "one", "type": "openai", "api_key": " sk-SECRET-C"}]},
                       model(name="d", type="openai", api_key="Bearer sk-fine"))
    found = problems(data, {"OPENAI_API_KEY": "sk-SECRET-ENV\r\n"})
    assert [p.split(":")[0] for p in found] == ["models[0].api_key", "OPENAI_API_KEY (for models[1])",
                                                "models[2].deployments[0].api_key"]
    assert not any("SECRET" in p for p in found)
