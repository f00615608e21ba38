"""Config: a model's deployments, breaker settings, fallbacks and context-window fallback (issue 18)."""

from __future__ import annotations

import pytest

from shared.config import parse_config
from shared.config_types import DEFAULT_DEPLOYMENT, BreakerConfig, RateLimit
from tests.unit.config_fixtures import config_with, model, problems


def deployment(name: str, **fields: object) -> dict:
    return {"name": name, "type": "generic", "base_url": f"http://{name}.internal:8000/v1", **fields}


def long_form(*deployments: dict, **fields: object) -> dict:
    return {"name": "pool", "deployments": list(deployments), **fields}


def test_the_long_form_lists_each_deployment_and_the_model_reads_as_its_first():
    config = parse_config(config_with(long_form(
        deployment("a", model="llama-70b", weight=3, rate_limit={"requests_per_minute": 100}),
        deployment("b", type="openai", base_url="https://api.openai.com/v1", api_key="sk-b", model="gpt-4o",
                   verify_tls=False),
        breaker={"failures": 2, "window": "10s", "cool_down": "5s", "max_cool_down": "1m", "forbidden": 2},
    )), {})
    pool = config.model("pool")
    assert [d.name for d in pool.upstreams] == ["a", "b"]
    a, b = pool.deployments
    assert (a.type, a.base_url, a.model, a.weight, a.rate_limit) == (
        "generic", "http://a.internal:8000/v1", "llama-70b", 3, RateLimit(requests_per_minute=100))
    assert (b.type, b.api_key, b.model, b.verify_tls, b.native_responses_api, b.weight) == (
        "openai", "sk-b", "gpt-4o", False, True, 1)
    assert (pool.type, pool.base_url, pool.model) == ("generic", "http://a.internal:8000/v1", "llama-70b")
    assert pool.breaker == BreakerConfig(failures=2, window=10.0, cool_down=5.0, max_cool_down=60.0, forbidden=2)
    assert pool.uses_breaker
    served_by_b = pool.for_deployment(b)
    assert (served_by_b.name, served_by_b.type, served_by_b.api_key, served_by_b.model, served_by_b.timeout) == (
        "pool", "openai", "sk-b", "gpt-4o", pool.timeout)
    assert "sk-b" not in repr(b)


def test_the_short_form_is_one_default_deployment_without_a_breaker():
    local = parse_config(config_with(model(model="m1")), {}).model("local")
    assert local.deployments == ()
    (only,) = local.upstreams
    assert (only.name, only.type, only.base_url, only.model) == (
        DEFAULT_DEPLOYMENT, "generic", "http://llm.internal:8000/v1", "m1")
    assert local.for_deployment(only) is local
    assert not local.uses_breaker
    assert local.breaker == BreakerConfig()


def test_fallbacks_name_other_configured_models():
    config = parse_config(config_with(
        model(name="a", fallbacks=["b", "c"], context_window_fallback="c"), model(name="b"), model(name="c")), {})
    a = config.model("a")
    assert (a.fallbacks, a.context_window_fallback, a.uses_breaker) == (("b", "c"), "c", True)
    assert (config.model("b").fallbacks, config.model("b").context_window_fallback) == ((), None)


RULES = {
    "deployments-empty": (long_form(), "models[0].deployments: must be a non-empty list of deployments, got a list"),
    "deployments-mapping": ({"name": "pool", "deployments": {"a": 1}},
                            "models[0].deployments: must be a non-empty list of deployments, got a mapping"),
    "deployment-key": (long_form(deployment("a", url="x")), "models[0].deployments[0].url: unknown key"),
    "deployment-name": (long_form({"type": "generic", "base_url": "http://x"}),
                        "models[0].deployments[0].name: required"),
    "deployment-name-chars": (long_form(deployment("a b")),
                              "models[0].deployments[0].name: must be 1-100 letters, digits, '.', '_' or '-'"),
    "deployment-duplicate": (long_form(deployment("a"), deployment("a")),
                             "models[0].deployments[1].name: duplicate deployment name 'a' (also "
                             "models[0].deployments[0])"),
    "deployment-type": (long_form(deployment("a", type="azure")),
                        "models[0].deployments[0].type: must be one of openai, anthropic, vertex, generic"),
    "deployment-generic-url": (long_form({"name": "a", "type": "generic"}),
                               "models[0].deployments[0].base_url: required for generic models"),
    "deployment-weight": (long_form(deployment("a", weight=0)),
                          "models[0].deployments[0].weight: must be an integer between 1 and 1000, got 0"),
    "deployment-rate-per": (long_form(deployment("a", rate_limit={"requests_per_minute": 5, "per": "user"})),
                            "models[0].deployments[0].rate_limit.per: only routes can limit per user or project"),
    "model-keys-in-long-form": ({**long_form(deployment("a")), "base_url": "http://x"},
                                "models[0].base_url: with deployments, set this on each deployment"),
    "breaker-key": (model(breaker={"threshold": 3}), "models[0].breaker.threshold: unknown key"),
    "breaker-failures": (model(breaker={"failures": 0}),
                         "models[0].breaker.failures: must be an integer between 1 and 1000, got 0"),
    "breaker-cool-down": (model(breaker={"cool_down": "500ms"}),
                          "models[0].breaker.cool_down: must be at least 1s and at most 1h, got 500ms"),
    "breaker-short-form": (model(breaker={"failures": 3}),  # it would have no effect: refused, not ignored
                           "models[0].breaker: a model with one upstream (no deployments) and no fallbacks has no "
                           "breaker, so that it costs nothing more; list its upstream under deployments (one is "
                           "enough) or give it fallbacks to have one"),
    "fallbacks-not-list": (model(fallbacks="b"), "models[0].fallbacks: must be a list of model names, got 'b'"),
    "fallback-unknown": (model(fallbacks=["nope"]), "models[0].fallbacks[0]: 'nope' is not a configured model"),
    "fallback-itself": (model(fallbacks=["local"]), "models[0].fallbacks[0]: 'local' is the model itself"),
    "fallback-duplicate": (model(fallbacks=["nope", "nope"]), "models[0].fallbacks[1]: duplicate entry 'nope'"),
    "context-fallback-unknown": (model(context_window_fallback="big"),
                                 "models[0].context_window_fallback: 'big' is not a configured model"),
    "context-fallback-itself": (model(context_window_fallback="local"),
                                "models[0].context_window_fallback: 'local' is the model itself"),
}


@pytest.mark.parametrize("case", RULES)
def test_each_rule_names_its_key_path(case):
    node, expected = RULES[case]
    found = problems(config_with(node))
    assert expected in found, found


def test_a_short_form_model_with_fallbacks_may_set_its_breaker():
    config = parse_config(config_with(model(name="one", breaker={"failures": 2}, fallbacks=["local"]), model()), {})
    assert config.model("one").uses_breaker and config.model("one").breaker.failures == 2


def test_check_shows_each_deployment_and_the_breaker_never_a_key():
    from shared.config import format_summary

    config = parse_config(config_with(long_form(deployment("a", weight=2), deployment("b", api_key="sk-b-SECRET"),
                                                fallbacks=["local"]), model()), {})
    summary = format_summary(config, "config.yaml")
    assert ("    deployment a: type generic, base_url http://a.internal:8000/v1, upstream model pool, weight 2"
            in summary)
    assert "deployment b:" in summary and "api key: set" in summary and "sk-b-SECRET" not in summary
    assert "    breaker: 5 failures in 1m cool down 30s (Retry-After up to 5m), 3 consecutive 403s fail it" in summary
    assert "    fallbacks [local], context_window_fallback none" in summary
