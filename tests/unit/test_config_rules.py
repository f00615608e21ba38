"""Config validation: each rule reports exactly one problem line, and all problems are reported together."""

from __future__ import annotations

import pytest

from shared.config import ConfigError
from tests.unit.config_fixtures import config_with, model, problems

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
