"""The gateway's YAML config file: loading, validation and ``python -m shared.config check``.

Every problem in a file is collected and reported at once, one line each, as
``<path>: <message>`` (``models[1].type: must be one of ...``), so an operator
fixes a file in one pass. ``${VAR}`` in any string is replaced from the
environment before validation. API keys never appear in reprs or summaries.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any, NoReturn, TextIO

import yaml

from shared.config_duo import parse_duo
from shared.config_models import _models
from shared.config_parse import (
    _GITLAB_KEYS,
    _TOP_KEYS,
    _boolean,
    _Checker,
    _describe,
    _integer,
    _one_of,
    _readable_file,
    _routes,
    _StrictLoader,
    _substitute,
    drop_params,
)
from shared.config_types import (
    ACCESS_LEVELS,
    API_KEY_ENV,
    DEFAULT_BASE_URLS,
    DEFAULT_CONFIG_PATH,
    MATCH_KEYS,
    MODEL_TYPES,
    REASONING_CONTROLS,
    ConfigError,
    DefaultsConfig,
    DuoConfig,
    GatewayConfig,
    GitLabConfig,
    JobsConfig,
    LoggingConfig,
    ModelConfig,
    RateLimit,
    Route,
    RouteMatch,
    parse_bool,
)
from shared.durations import parse_duration
from shared.sizes import format_size, parse_size

MIN_UNREAD_REPLY_BYTES = 1024  # smaller only multiplies the round trips a stream costs

# The public API: the dataclasses live in shared.config_types; ``format_summary`` and ``main`` (the
# ``check`` command) in shared.config_check, reachable here through ``__getattr__`` below.
__all__ = [
    "ACCESS_LEVELS", "API_KEY_ENV", "DEFAULT_BASE_URLS", "DEFAULT_CONFIG_PATH", "MATCH_KEYS", "MODEL_TYPES",
    "REASONING_CONTROLS", "ConfigError", "DefaultsConfig", "DuoConfig", "GatewayConfig",
    "GitLabConfig", "JobsConfig", "LoggingConfig", "ModelConfig", "RateLimit",
    "Route", "RouteMatch", "exit_on_config_error", "load_config", "parse_bool", "parse_config",
]


def load_config(path: str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file ({exc.strerror or exc})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: cannot read config file (not UTF-8 text)"]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        what = " ".join(str(exc.problem or exc.context).split())
        raise ConfigError([f"{path}: invalid YAML{where}: {what}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: invalid YAML: {' '.join(str(exc).split())}"]) from None
    return parse_config(data, environ, source=path)


def parse_config(data: object, environ: Mapping[str, str] | None = None, *,
                 source: str = "config") -> GatewayConfig:
    env = os.environ if environ is None else environ
    if data is None:
        raise ConfigError(["models: required"])
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: the top level must be a mapping, got {_describe(data)}"])
    c = _Checker()
    top = c.mapping(_substitute(data, env, "", c), "", _TOP_KEYS) or {}
    defaults = c.mapping(top.get("defaults", {}), "defaults", ("drop_params",)) or {}
    default_drop = drop_params(c, defaults.get("drop_params", []), "defaults.drop_params")
    models = _models(c, top, env, default_drop)
    routes = _routes(c, top, {m.name for m in models if m.name})
    gitlab = c.mapping(top.get("gitlab", {}), "gitlab", _GITLAB_KEYS) or {}
    jobs = c.mapping(top.get("jobs", {}), "jobs", ("result_ttl", "failure_ttl", "max_unread_reply_bytes",
                                                   "response_ttl", "max_stored_response_bytes")) or {}
    logging = c.mapping(top.get("logging", {}), "logging", ("log_payloads",)) or {}
    config = GatewayConfig(
        models=tuple(models),
        routes=tuple(routes),
        routes_configured="routes" in top,
        gitlab=GitLabConfig(
            timeout=c.get(gitlab, "timeout", "gitlab", parse_duration, 10.0, nonzero=True),
            verify_tls=c.get(gitlab, "verify_tls", "gitlab", _boolean, True),
            ca_file=c.get(gitlab, "ca_file", "gitlab", _readable_file),
            min_access_level=c.get(gitlab, "min_access_level", "gitlab", _one_of(*ACCESS_LEVELS), 30),
            cache_ttl=c.get(gitlab, "cache_ttl", "gitlab", parse_duration, 60.0),
            local_cache_ttl=c.get(gitlab, "local_cache_ttl", "gitlab", parse_duration, 1.0),
            outage_grace=c.get(gitlab, "outage_grace", "gitlab", parse_duration, 900.0),
            max_calls_per_second=c.get(gitlab, "max_calls_per_second", "gitlab", _integer, 20, lo=1, hi=10000),
        ),
        jobs=JobsConfig(
            result_ttl=c.get(jobs, "result_ttl", "jobs", parse_duration, 60.0, lo=1.0),
            failure_ttl=c.get(jobs, "failure_ttl", "jobs", parse_duration, 86400.0, lo=1.0),
            max_unread_reply_bytes=c.get(jobs, "max_unread_reply_bytes", "jobs", _reply_buffer_size,
                                         JobsConfig.max_unread_reply_bytes),
            response_ttl=c.get(jobs, "response_ttl", "jobs", parse_duration, JobsConfig.response_ttl, lo=1.0,
                               hi=30 * 86400.0),
            max_stored_response_bytes=c.get(jobs, "max_stored_response_bytes", "jobs", parse_size,
                                            JobsConfig.max_stored_response_bytes, lo=1024),
        ),
        logging=LoggingConfig(log_payloads=c.get(logging, "log_payloads", "logging", _boolean, False)),
        defaults=DefaultsConfig(drop_params=default_drop),
        duo=parse_duo(c, top.get("duo", {}), {m.name for m in models if m.name}),
        warnings=tuple(c.warnings),
    )
    if c.problems:
        raise ConfigError(c.problems)
    return config


def _reply_buffer_size(value: Any) -> int:
    size = parse_size(value)
    if size < MIN_UNREAD_REPLY_BYTES:
        raise ValueError(f"must be at least {format_size(MIN_UNREAD_REPLY_BYTES)}, got {format_size(size)}")
    return size


def exit_on_config_error(problems: list[str], *, stream: TextIO | None = None) -> NoReturn:
    """Print ``config error: <problem>`` lines (to stderr by default) and exit 2, never a traceback."""
    out = sys.stderr if stream is None else stream
    for problem in problems:
        print(f"config error: {problem}", file=out)
    out.flush()
    raise SystemExit(2)


def __getattr__(name: str) -> Any:
    """``format_summary`` and ``main`` live in ``shared.config_check``, which imports this module."""
    if name in ("format_summary", "main"):
        from shared import config_check
        return getattr(config_check, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    from shared.config_check import main

    sys.exit(main())
