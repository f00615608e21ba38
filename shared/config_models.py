"""The ``models`` list of the config file: each model, its deployments, breaker and fallbacks.

Read through ``shared.config_parse``'s checker and value readers; ``shared.config.parse_config`` calls
``_models``. Problems are named by key path (``models[1].deployments[0].name: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared.config_parse import (
    _UNRESOLVED,
    SANDBOX_PROVIDER_ENV,
    _any_text,
    _boolean,
    _Checker,
    _describe,
    _integer,
    _model_name,
    _one_of,
    _readable_file,
    _text,
    _url,
    drop_params,
)
from shared.config_types import (
    API_KEY_ENV,
    DEFAULT_BASE_URLS,
    MODEL_TYPES,
    REASONING_CONTROLS,
    BreakerConfig,
    DeploymentConfig,
    ModelConfig,
)
from shared.durations import parse_duration

_MODEL_KEYS = ("name", "type", "base_url", "api_key", "model", "timeout", "rate_limit", "retries",
               "workers", "concurrency", "max_queue_depth", "verify_tls", "ca_file", "max_output_tokens",
               "stream_idle_timeout", "max_stream_duration", "project", "location", "credentials_file",
               "native_responses_api", "drop_params", "reasoning", "deployments", "breaker", "fallbacks",
               "context_window_fallback")
_VERTEX_KEYS = ("project", "location", "credentials_file")
# How to reach one upstream: a short-form model's own keys, or each deployment's in the long form.
_UPSTREAM_KEYS = ("type", "base_url", "api_key", "model", "verify_tls", "ca_file", *_VERTEX_KEYS,
                  "native_responses_api", "reasoning")
_DEPLOYMENT_KEYS = ("name", *_UPSTREAM_KEYS, "weight", "rate_limit")
_BREAKER_KEYS = ("failures", "window", "cool_down", "max_cool_down", "forbidden", "min_callers")
# What an API key sent in an HTTP header may hold: no control character, no space at either end.
_HEADER_SAFE = re.compile(r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?")


def _reasoning(c: _Checker, node: dict, path: str, kind: str | None) -> str | None:
    """The model's reasoning control, if set: one of its type's (REASONING_CONTROLS)."""
    if "reasoning" not in node or kind not in REASONING_CONTROLS:
        return None
    choices = REASONING_CONTROLS[kind]
    return c.get(node, "reasoning", path, _one_of(*choices, for_what=f"{kind} models"))


def _models(c: _Checker, top: dict, env: Mapping[str, str],
            default_drop: tuple[str, ...] = ()) -> list[ModelConfig]:
    raw = top.get("models")
    if "models" not in top:
        c.add("models", "required")
    elif raw is not _UNRESOLVED and not (isinstance(raw, list) and raw):
        c.add("models", f"must be a non-empty list of models, got {_describe(raw)}")
    models: list[ModelConfig] = []
    paths: list[str] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        path = f"models[{i}]"
        node = c.mapping(item, path, _MODEL_KEYS)
        if node is None:
            continue
        name = c.get(node, "name", path, _model_name, required=True)
        _first_use(c, first_seen, name, i, path, "model", "models")
        deployments = _deployments(c, node, path, env, name) if "deployments" in node else ()
        if "deployments" in node:
            for key in _UPSTREAM_KEYS:
                if key in node:
                    c.add(f"{path}.{key}", "with deployments, set this on each deployment")
            upstream = _upstream_of(deployments[0]) if deployments else _NO_UPSTREAM
        else:
            upstream = _upstream(c, node, path, env, name)
            if "breaker" in node and not node.get("fallbacks"):  # it would be ignored: say so
                c.add(f"{path}.breaker", "a model with one upstream (no deployments) and no fallbacks has no "
                      "breaker, so that it costs nothing more; list its upstream under deployments (one is "
                      "enough) or give it fallbacks to have one")
        retries = c.mapping(node.get("retries", {}), f"{path}.retries", ("attempts",)) or {}
        models.append(ModelConfig(
            name=name or "",
            **upstream,
            timeout=c.get(node, "timeout", path, parse_duration, 30.0, nonzero=True, hi=3600.0),
            rate_limit=c.rate_limit(node, path, route=False),
            retry_attempts=c.get(retries, "attempts", f"{path}.retries", _integer, 3, lo=1, hi=10),
            workers=c.get(node, "workers", path, _integer, 1, lo=0, hi=256),
            concurrency=c.get(node, "concurrency", path, _integer, 16, lo=1, hi=1000),
            max_queue_depth=c.get(node, "max_queue_depth", path, _integer, 1000, lo=1),
            max_output_tokens=c.get(node, "max_output_tokens", path, _integer, 1024, lo=1),
            stream_idle_timeout=c.get(node, "stream_idle_timeout", path, parse_duration, 60.0, nonzero=True, hi=3600.0),
            max_stream_duration=c.get(node, "max_stream_duration", path, parse_duration, 600.0, nonzero=True,
                                      hi=86400.0),
            drop_params=drop_params(c, node["drop_params"], f"{path}.drop_params") if "drop_params" in node
            else default_drop,
            deployments=deployments,
            breaker=_breaker(c, node, path),
            fallbacks=_model_names(c, node, "fallbacks", path),
            context_window_fallback=c.get(node, "context_window_fallback", path, _text),
        ))
        paths.append(path)
    _check_fallbacks(c, list(zip(paths, models, strict=True)), first_seen)
    return models


def _first_use(c: _Checker, first_seen: dict[str, int], name: str | None, i: int, where: str, what: str,
               listed: str) -> None:
    """Records where ``name`` is first used (item ``i`` of ``listed``); a second use is a problem at
    ``where``.name that names the first."""
    if name in first_seen:
        c.add(f"{where}.name", f"duplicate {what} name '{name}' (also {listed}[{first_seen[name]}])")
    elif name is not None:
        first_seen[name] = i


def _upstream(c: _Checker, node: dict, path: str, env: Mapping[str, str], name: str | None) -> dict:
    """The keys that say how to reach one upstream (a short-form model's, or a deployment's), as
    ``ModelConfig``/``DeploymentConfig`` fields."""
    kind = c.get(node, "type", path, _one_of(*MODEL_TYPES), required=True)
    location = None
    if kind == "vertex":
        if "project" not in node:
            c.add(f"{path}.project", "required for vertex models")
        location = c.get(node, "location", path, _text) or "us-central1"
    else:
        for key in _VERTEX_KEYS:
            if key in node:
                c.add(f"{path}.{key}", "only vertex models take this key")
    default_base = None
    if kind == "vertex":  # the global endpoint has no region prefix
        host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
        default_base = f"https://{host}/v1"
    base_url = c.get(node, "base_url", path, _url) or DEFAULT_BASE_URLS.get(kind) or default_base
    if kind == "generic" and "base_url" not in node:
        c.add(f"{path}.base_url", "required for generic models")
    if "api_key" in node:
        api_key = c.get(node, "api_key", path, _any_text) or None  # "" deliberately sends no key
    else:
        # Only the provider's own key: a generic (private) server must never get the OpenAI key.
        var = API_KEY_ENV.get(kind)
        api_key = (env.get(var) or None) if var else None
        if var and api_key is None and not _sandboxed(base_url, env):
            c.warnings.append(f"{path} ({name}): no api_key and {var} is not set; "
                              "requests will be sent without a key")
    if api_key and not _HEADER_SAFE.fullmatch(api_key):
        # No HTTP header can carry it: every call would fail, and the HTTP library's error, which
        # the worker logs, quotes the header, key and all. Named by where it came from, never shown.
        where = f"{path}.api_key" if "api_key" in node else f"{API_KEY_ENV.get(kind)} (for {path})"
        c.add(where, "holds a control character or begins or ends with a space (a newline from a file?), "
                     "which no HTTP header can carry")
    if "native_responses_api" in node and kind not in ("openai", "generic"):
        c.add(f"{path}.native_responses_api", "only openai and generic models take this key")
    return dict(
        type=kind or "",
        base_url=base_url or "",
        api_key=api_key,
        model=c.get(node, "model", path, _text) or name or "",
        verify_tls=c.get(node, "verify_tls", path, _boolean, True),
        ca_file=c.get(node, "ca_file", path, _readable_file),
        project=c.get(node, "project", path, _text) if kind == "vertex" else None,
        location=location,
        credentials_file=c.get(node, "credentials_file", path, _readable_file) if kind == "vertex" else None,
        native_responses_api=c.get(node, "native_responses_api", path, _boolean, kind == "openai")
        if kind in ("openai", "generic") else False,
        reasoning=_reasoning(c, node, path, kind),
    )


def _upstream_of(deployment: DeploymentConfig) -> dict:
    """A long-form model's own upstream fields: its first deployment's."""
    return {key: getattr(deployment, key) for key in _NO_UPSTREAM}


_NO_UPSTREAM = dict(type="", base_url="", api_key=None, model="", verify_tls=True, ca_file=None, project=None,
                    location=None, credentials_file=None, native_responses_api=False, reasoning=None)


def _deployments(c: _Checker, node: dict, path: str, env: Mapping[str, str],
                 model_name: str | None) -> tuple[DeploymentConfig, ...]:
    raw = node["deployments"]
    path = f"{path}.deployments"
    if raw is _UNRESOLVED:
        return ()
    if not (isinstance(raw, list) and raw):
        c.add(path, f"must be a non-empty list of deployments, got {_describe(raw)}")
        return ()
    found: list[DeploymentConfig] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        body = c.mapping(item, where, _DEPLOYMENT_KEYS)
        if body is None:
            continue
        name = c.get(body, "name", where, _model_name, required=True)
        _first_use(c, first_seen, name, i, where, "deployment", path)
        found.append(DeploymentConfig(
            name=name or "",
            **_upstream(c, body, where, env, model_name),
            weight=c.get(body, "weight", where, _integer, 1, lo=1, hi=1000),
            rate_limit=c.rate_limit(body, where, route=False),
        ))
    return tuple(found)


def _breaker(c: _Checker, node: dict, path: str) -> BreakerConfig:
    path = f"{path}.breaker"
    body = c.mapping(node.get("breaker", {}), path, _BREAKER_KEYS) or {}
    default = BreakerConfig()
    return BreakerConfig(
        failures=c.get(body, "failures", path, _integer, default.failures, lo=1, hi=1000),
        window=c.get(body, "window", path, parse_duration, default.window, nonzero=True, hi=3600.0),
        cool_down=c.get(body, "cool_down", path, parse_duration, default.cool_down, lo=1.0, hi=3600.0),
        max_cool_down=c.get(body, "max_cool_down", path, parse_duration, default.max_cool_down, lo=1.0,
                            hi=86400.0),
        forbidden=c.get(body, "forbidden", path, _integer, default.forbidden, lo=1, hi=100),
        min_callers=c.get(body, "min_callers", path, _integer, default.min_callers, lo=1, hi=100),
    )


def _model_names(c: _Checker, node: dict, key: str, path: str) -> tuple[str, ...]:
    """A list of model names (``fallbacks``); which are configured is checked once all are read."""
    value = node.get(key, [])
    if value is _UNRESOLVED:
        return ()
    if not isinstance(value, list):
        c.add(f"{path}.{key}", f"must be a list of model names, got {_describe(value)}")
        return ()
    names: list[str] = []
    for i, item in enumerate(value):
        if item is _UNRESOLVED:
            continue
        if not isinstance(item, str):
            c.add(f"{path}.{key}[{i}]", f"must be a model name, got {_describe(item)}")
        elif item in names:
            c.add(f"{path}.{key}[{i}]", f"duplicate entry '{item}'")
        else:
            names.append(str(item))
    return tuple(names)


def _check_fallbacks(c: _Checker, models: list[tuple[str, ModelConfig]], first_seen: dict[str, int]) -> None:
    """Every fallback and context_window_fallback names another configured model."""
    for path, model in models:
        for j, target in enumerate(model.fallbacks):
            _check_target(c, f"{path}.fallbacks[{j}]", target, model.name, first_seen)
        if model.context_window_fallback is not None:
            _check_target(c, f"{path}.context_window_fallback", model.context_window_fallback, model.name,
                          first_seen)


def _check_target(c: _Checker, where: str, target: str, name: object, first_seen: dict[str, int]) -> None:
    if target == name:
        c.add(where, f"'{target}' is the model itself")
    elif target not in first_seen:
        c.add(where, f"'{target}' is not a configured model")



def _sandboxed(base_url: str | None, env: Mapping[str, str]) -> bool:
    sandbox = (env.get(SANDBOX_PROVIDER_ENV) or "").rstrip("/")
    return bool(sandbox and base_url) and (base_url == sandbox or base_url.startswith(sandbox + "/"))
