"""The config file's ``duo:`` section: GitLab Duo Self-Hosted using this gateway as its AI gateway.

``parse_duo`` reads it for ``shared.config.parse_config``. Each concern of the section has its own
keys and its own reader returning the ``DuoConfig`` fields it owns, so a key is added to one tuple
and one reader: who may call (``AUTH_KEYS``, ``_auth_fields``; see ``api.duo_auth``) and what serves
each Duo feature and with which prompts (``FEATURE_KEYS``, ``_feature_fields``; see ``api.duo``).
"""

from __future__ import annotations

from typing import Any

from shared.config_parse import _UNRESOLVED, _boolean, _Checker, _describe, _model_name
from shared.config_types import DuoConfig, DuoModelPrompts
from shared.duo_prompts import FIM_FAMILIES, TEMPLATES, fim_family, template_problem
from shared.durations import parse_duration

AUTH_KEYS = ("instance_ids", "keys_refetch_interval")
# The Duo features a model may be named for (GitLab's Ai::FeatureSetting names); chat's slash commands
# are duo_chat's.
FEATURES = ("code_completions", "code_generations", "duo_chat")
FEATURE_KEYS = (*FEATURES, "prompts")
DUO_KEYS = AUTH_KEYS + FEATURE_KEYS
PROMPT_KEYS = ("family", "fim_suffix", *TEMPLATES)


def parse_duo(c: _Checker, value: Any, known_models: set[str]) -> DuoConfig:
    """The ``duo:`` mapping (``{}`` when the file has none) as a ``DuoConfig``; problems go to ``c``."""
    node = c.mapping(value, "duo", DUO_KEYS) or {}
    return DuoConfig(**_auth_fields(c, node), **_feature_fields(c, node, known_models))


def _auth_fields(c: _Checker, node: dict) -> dict:
    instance_ids: tuple[str, ...] = ()
    if "instance_ids" in node:
        # GitLab's instance id (ApplicationSetting#uuid, the JWT's sub): a UUID, any non-empty text here.
        instance_ids = c.ids(node["instance_ids"], "duo.instance_ids") or ()
    return {
        "instance_ids": instance_ids,
        # At least a second: a flood of tokens naming unknown keys must not become a flood of GitLab calls.
        "keys_refetch_interval": c.get(node, "keys_refetch_interval", "duo", parse_duration,
                                       DuoConfig.keys_refetch_interval, lo=1.0, hi=3600.0),
    }


def _feature_fields(c: _Checker, node: dict, known_models: set[str]) -> dict:
    features = {}
    for feature in FEATURES:
        name = c.get(node, feature, "duo", _model_name)
        if name is None:
            continue
        if name not in known_models:
            c.add(f"duo.{feature}", f"names no configured model: '{name}'")
        else:
            features[feature] = name
    prompts = {}
    section = node.get("prompts", {})
    for model, value in (c.mapping(section, "duo.prompts", tuple(section)) or {}).items():
        if model not in known_models:
            c.add(f"duo.prompts.{model}", "names no configured model")
        else:
            prompts[model] = _model_prompts(c, value, f"duo.prompts.{model}")
    return {"features": features, "prompts": prompts}


def _model_prompts(c: _Checker, value: Any, path: str) -> DuoModelPrompts:
    node = c.mapping(value, path, PROMPT_KEYS) or {}
    family = None
    if "family" in node:
        raw = node["family"]
        family = fim_family(raw) if isinstance(raw, str) else None
        if family is None:
            c.add(f"{path}.family", f"must be a fill-in-the-middle family ({', '.join(FIM_FAMILIES)}), got "
                                    f"{raw!r}" if isinstance(raw, str) else f"must be a string, got {_describe(raw)}")
    templates = {}
    for name in TEMPLATES:
        if name not in node:
            continue
        text = node[name]
        if text is _UNRESOLVED:  # its ${VAR} failed, already said
            continue
        problem = (f"must be a string, got {_describe(text)}" if not isinstance(text, str)
                   else template_problem(name, text))
        if problem:
            c.add(f"{path}.{name}", problem)
        else:
            templates[name] = text
    return DuoModelPrompts(family=family, fim_suffix=bool(c.get(node, "fim_suffix", path, _boolean, False)),
                           templates=templates)
