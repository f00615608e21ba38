"""Validation behind ``shared.config.parse_config``: the checker and field readers, ``${VAR}``, a
duplicate-key-safe YAML loader, and the routes; the models list is read in ``shared.config_models``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from shared.config_types import (
    MATCH_KEYS,
    RateLimit,
    Route,
    RouteMatch,
    parse_bool,
)
from shared.durations import format_duration, parse_duration
from shared.urls import parse_http_url

_TOP_KEYS = ("models", "routes", "gitlab", "jobs", "logging", "defaults", "duo")
_LIMITS = ("requests_per_minute", "tokens_per_minute", "requests_per_day")
_ROUTE_KEYS = ("name", "match", "destination", "rate_limit")
_GITLAB_KEYS = ("timeout", "verify_tls", "ca_file", "min_access_level", "cache_ttl", "local_cache_ttl",
                "outage_grace", "max_calls_per_second")
# Model names become RQ queue names: no colons, no spaces.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ENV_REF = re.compile(r"\$\{([^}]*)\}")  # ${VAR}, or ${VAR:-default} when VAR is unset or empty
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
# needs no key, and a warning that it has none would read like a misconfiguration
# (shared.config_models reads it).
SANDBOX_PROVIDER_ENV = "AIGW_SANDBOX_PROVIDER_URL"


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
