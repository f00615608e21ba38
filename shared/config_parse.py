"""Validation behind ``shared.config.parse_config``: field readers, ``${VAR}``, a duplicate-key-safe YAML loader."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from shared.config_types import (
    API_KEY_ENV,
    DEFAULT_BASE_URLS,
    MATCH_KEYS,
    MODEL_TYPES,
    REASONING_CONTROLS,
    BreakerConfig,
    DeploymentConfig,
    ModelConfig,
    RateLimit,
    Route,
    RouteMatch,
    parse_bool,
)
from shared.durations import format_duration, parse_duration
from shared.urls import parse_http_url

_TOP_KEYS = ("models", "routes", "gitlab", "jobs", "logging", "defaults", "duo")
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
_LIMITS = ("requests_per_minute", "tokens_per_minute", "requests_per_day")
_ROUTE_KEYS = ("name", "match", "destination", "rate_limit")
_GITLAB_KEYS = ("timeout", "verify_tls", "ca_file", "min_access_level", "cache_ttl", "local_cache_ttl",
                "outage_grace", "max_calls_per_second")
# Model names become RQ queue names: no colons, no spaces.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ENV_REF = re.compile(r"\$\{([^}]*)\}")  # ${VAR}, or ${VAR:-default} when VAR is unset or empty
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What an API key sent in an HTTP header may hold: no control character, no space at either end.
_HEADER_SAFE = re.compile(r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?")
# A drop_params entry: a field name or a dotted path (output_config.effort, tools.web_search).
_PARAM_PATH = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*(?:\.[A-Za-z_$][A-Za-z0-9_$-]*)*")
MAX_PARAM_PATH = 200
# What the gateway itself needs of a request: never dropped.
UNDROPPABLE = ("model", "messages", "input", "prompt", "stream")


def drop_params(c: _Checker, value: Any, path: str) -> tuple[str, ...]:
    """A drop_params list: field names, dotted paths or ``tools.<type>``; a bad entry is a problem
    named by its index, and left out."""
    if value is _UNRESOLVED:
        return ()
    if not isinstance(value, list):
        c.add(path, f"must be a list of field names or dotted paths, got {_describe(value)}")
        return ()
    found: list[str] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if item is _UNRESOLVED:
            continue
        if not isinstance(item, str) or len(item) > MAX_PARAM_PATH or not _PARAM_PATH.fullmatch(item):
            shown = repr(item[:MAX_PARAM_PATH]) if isinstance(item, str) else _describe(item)
            c.add(where, f"must be a field name or a dotted path (output_config.effort, tools.web_search), "
                         f"got {shown}")
        elif item.split(".")[0] in UNDROPPABLE:
            c.add(where, f"'{item}' cannot be dropped: the gateway needs it")
        elif item in found:
            c.add(where, f"duplicate entry '{item}'")
        else:
            found.append(str(item))
    return tuple(found)


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
        if name in first_seen:
            c.add(f"{path}.name", f"duplicate model name '{name}' (also models[{first_seen[name]}])")
        elif name is not None:
            first_seen[name] = i
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
        if name in first_seen:
            c.add(f"{where}.name", f"duplicate deployment name '{name}' (also {path}[{first_seen[name]}])")
        elif name is not None:
            first_seen[name] = i
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


def _routes(c: _Checker, top: dict, known: set[str]) -> list[Route]:
    if "routes" not in top:
        c.warnings.append("no routes configured: every caller may use every model by its own name")
        return []
    raw = top["routes"]
    if raw is not _UNRESOLVED and not isinstance(raw, list):
        c.add("routes", f"must be a list of routes, got {_describe(raw)}")
    routes: list[Route] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        path = f"routes[{i}]"
        node = c.mapping(item, path, _ROUTE_KEYS)
        if node is None:
            continue
        name = c.get(node, "name", path, _text) or f"route-{i}"
        if name in first_seen:
            c.add(f"{path}.name", f"duplicate route name '{name}' (also routes[{first_seen[name]}])")
        first_seen.setdefault(name, i)
        body = c.mapping(node.get("match", {}), f"{path}.match", MATCH_KEYS) or {}
        match = RouteMatch(**{key: c.ids(body[key], f"{path}.match.{key}") for key in MATCH_KEYS
                              if key in body})
        destination = c.get(node, "destination", path, _text)
        if destination is not None and destination not in known:
            c.add(f"{path}.destination", f"'{destination}' is not a configured model")
        if "destination" not in node:
            for requested in match.model_name or ():
                if requested not in known:
                    c.add(f"{path}.match.model_name", f"'{requested}' is not a configured model; "
                          "give the route a destination to make it an alias")
        routes.append(Route(name, match, destination, c.rate_limit(node, path, route=True)))
    return routes


class _Checker:
    """Reads typed fields; a bad one is recorded as a problem and read as its default."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...]) -> dict | None:
        if value is _UNRESOLVED:
            return None
        if not isinstance(value, dict):
            self.add(path, f"must be a mapping, got {_describe(value)}")
            return None
        for key in value:
            if key not in allowed:
                self.add(_join(path, key), "unknown key")
        return value

    def get(self, node: dict, key: str, path: str, convert: Callable[[Any], Any], default: Any = None,
            *, lo: float | None = None, hi: float | None = None, nonzero: bool = False,
            required: bool = False) -> Any:
        where = _join(path, key)
        value = node.get(key, _UNRESOLVED)
        if value is _UNRESOLVED:
            if required and key not in node:
                self.add(where, "required")
            return default
        try:
            value = convert(value)
        except ValueError as exc:
            self.add(where, str(exc))
            return default
        if (lo is not None and value < lo) or (hi is not None and value > hi) or (nonzero and not value):
            self.add(where, _bounds(convert, value, lo, hi, nonzero))
            return default
        return value

    def rate_limit(self, node: dict, path: str, *, route: bool) -> RateLimit:
        path = f"{path}.rate_limit"
        body = self.mapping(node.get("rate_limit", {}), path, (*_LIMITS, "per")) or {}
        per = None
        if "per" in body and not route:
            self.add(f"{path}.per", "only routes can limit per user or project")
        elif "per" in body:
            per = self.get(body, "per", path, _one_of("user", "project"))
        return RateLimit(**{key: self.get(body, key, path, _integer, lo=1) for key in _LIMITS}, per=per)

    def ids(self, value: Any, path: str) -> tuple[str, ...] | None:
        """A string, an integer or a non-empty list of them, as a tuple of strings."""
        if value is _UNRESOLVED:
            return None
        if isinstance(value, list) and not value:
            self.add(path, "must not be an empty list")
        items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        found = []
        for i, item in items:
            where = path if i is None else f"{path}[{i}]"
            if item is _UNRESOLVED:
                continue
            if isinstance(item, bool) or not isinstance(item, str | int):
                self.add(where, "must be a string, an integer or a non-empty list of them, "
                                f"got {_describe(item)}")
            elif not str(item).strip():
                self.add(where, "must not be empty")
            else:
                found.append(str(item).strip())
        return tuple(found)


def _bounds(convert: Callable[[Any], Any], value: float, lo: float | None, hi: float | None,
            nonzero: bool) -> str:
    if convert is parse_duration:
        parts = ["greater than 0"] if nonzero else []
        parts += [f"at least {format_duration(lo)}"] if lo is not None else []
        parts += [f"at most {format_duration(hi)}"] if hi is not None else []
        return f"must be {' and '.join(parts)}, got {format_duration(value)}"
    if hi is not None:
        return f"must be an integer between {lo} and {hi}, got {value}"
    return f"must be a positive integer, got {value}" if lo == 1 else f"must be at least {lo}, got {value}"


def _any_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_describe(value)}")
    return str(value)


def _text(value: Any) -> str:
    if not _any_text(value).strip():
        raise ValueError("must not be empty")
    return str(value)


def _model_name(value: Any) -> str:
    if not _NAME.fullmatch(_any_text(value)):
        raise ValueError("must be 1-100 letters, digits, '.', '_' or '-'")
    return str(value)


def _integer(value: Any) -> int:
    if isinstance(value, _EnvStr) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, got {_describe(value)}")
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, _EnvStr):
        return parse_bool(value)
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {_describe(value)}")
    return value


def _one_of(*choices: Any, for_what: str = "") -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        for choice in choices:  # compare types too: YAML `type: 1` or `per: true` are wrong
            if type(value) is type(choice) and value == choice:
                return choice
            if isinstance(value, _EnvStr) and str(choice) == value.strip():
                return choice
        raise ValueError("must be one of " + ", ".join(map(str, choices)) + (f" for {for_what}" if for_what else ""))
    return convert


def _url(value: Any) -> str:
    return parse_http_url(_text(value))


# Set by ``make run`` (tools/run.py) to the sandbox provider it started: a model served there
# needs no key, and a warning that it has none would read like a misconfiguration.
SANDBOX_PROVIDER_ENV = "AIGW_SANDBOX_PROVIDER_URL"


def _sandboxed(base_url: str | None, env: Mapping[str, str]) -> bool:
    sandbox = (env.get(SANDBOX_PROVIDER_ENV) or "").rstrip("/")
    return bool(sandbox and base_url) and (base_url == sandbox or base_url.startswith(sandbox + "/"))


def _readable_file(value: Any) -> str:
    path = _text(value)
    if not os.path.isfile(path):
        raise ValueError(f"file not found: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"file not readable: {path}")
    return path


class _StrictLoader(yaml.SafeLoader):
    """Rejects duplicate keys, which YAML resolves silently to the last (say, a second ``routes:``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key_node.value}'", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


class _EnvStr(str):
    """Text from ``${VAR}``: environment values may stand for numbers and booleans."""


_UNRESOLVED = object()  # a scalar whose ${VAR} failed; the problem is already reported


def _substitute(value: Any, env: Mapping[str, str], path: str, c: _Checker) -> Any:
    if isinstance(value, dict):
        return {key: _substitute(item, env, _join(path, key), c) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, env, f"{path}[{i}]", c) for i, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    failed = []

    def replace(ref: re.Match) -> str:
        name, has_default, default = ref.group(1).partition(":-")
        if not _ENV_NAME.fullmatch(name):
            failed.append(f"invalid environment variable reference '{ref.group(0)}'")
        elif not env.get(name) and not has_default:
            failed.append(f"environment variable {name} is not set")
        return env.get(name) or default

    text = _ENV_REF.sub(replace, value)
    for message in failed:
        c.add(path, message)
    return _UNRESOLVED if failed else _EnvStr(text)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(str(value)) if isinstance(value, str) else str(value)
