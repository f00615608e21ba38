"""``drop_params`` (per model and ``defaults.drop_params``) and a model's ``reasoning`` control."""

from __future__ import annotations

import pytest

from shared.config import parse_config
from tests.unit.config_fixtures import config_with, model, problems

PATH_SHAPE = "must be a field name or a dotted path (output_config.effort, tools.web_search)"


def test_a_models_list_and_the_defaults() -> None:
    config = parse_config(config_with(
        model(name="own", drop_params=["thinking", "output_config.effort", "tools.web_search"]),
        model(name="inherits"),
        model(name="none-at-all", drop_params=[]),
        defaults={"drop_params": ["context_management"]}))
    own, inherits, none_at_all = config.models
    assert own.drop_params == ("thinking", "output_config.effort", "tools.web_search")
    # A model's own list replaces the default, so [] opts a model out of it.
    assert inherits.drop_params == ("context_management",)
    assert none_at_all.drop_params == ()
    assert config.defaults.drop_params == ("context_management",)


def test_nothing_is_dropped_unless_listed() -> None:
    config = parse_config(config_with(model()))
    assert config.models[0].drop_params == ()
    assert config.defaults.drop_params == ()


@pytest.mark.parametrize(("entries", "expected"), [
    ("thinking", "models[0].drop_params: must be a list of field names or dotted paths, got 'thinking'"),
    ([3], f"models[0].drop_params[0]: {PATH_SHAPE}, got 3"),
    (["top k"], f"models[0].drop_params[0]: {PATH_SHAPE}, got 'top k'"),
    (["tools[0].type"], f"models[0].drop_params[0]: {PATH_SHAPE}, got 'tools[0].type'"),
    (["a..b"], f"models[0].drop_params[0]: {PATH_SHAPE}, got 'a..b'"),
    ([""], f"models[0].drop_params[0]: {PATH_SHAPE}, got ''"),
    (["ok", "messages"], "models[0].drop_params[1]: 'messages' cannot be dropped: the gateway needs it"),
    (["model"], "models[0].drop_params[0]: 'model' cannot be dropped: the gateway needs it"),
    (["stream"], "models[0].drop_params[0]: 'stream' cannot be dropped: the gateway needs it"),
    (["thinking", "thinking"], "models[0].drop_params[1]: duplicate entry 'thinking'"),
])
def test_bad_entries_are_named_by_their_key_path(entries, expected) -> None:
    assert problems(config_with(model(drop_params=entries))) == [expected]


def test_bad_defaults_are_named_too() -> None:
    assert problems(config_with(defaults={"drop_params": [{"a": 1}], "timeout": 1})) == [
        "defaults.timeout: unknown key",
        f"defaults.drop_params[0]: {PATH_SHAPE}, got a mapping",
    ]
    assert problems(config_with(defaults=["thinking"])) == ["defaults: must be a mapping, got a list"]


@pytest.mark.parametrize(("kind", "extra", "default", "allowed"), [
    ("openai", {}, "none", ("none", "effort")),
    ("generic", {"base_url": "http://llm:8000/v1"}, "none", ("none", "effort")),
    ("anthropic", {}, "budget", ("budget", "adaptive", "none")),
    ("vertex", {"project": "p"}, "budget", ("budget", "none")),
])
def test_reasoning_control_per_type(kind, extra, default, allowed) -> None:
    base = {"name": "m", "type": kind, "api_key": "k", **extra} if kind != "vertex" else {
        "name": "m", "type": kind, **extra}
    unset = parse_config(config_with(base)).models[0]
    assert (unset.reasoning, unset.reasoning_control) == (None, default)
    for value in allowed:
        chosen = parse_config(config_with({**base, "reasoning": value})).models[0]
        assert chosen.reasoning_control == value
    assert problems(config_with({**base, "reasoning": "sometimes"})) == [
        f"models[0].reasoning: must be one of {', '.join(allowed)} for {kind} models"]
