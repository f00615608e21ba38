"""Process settings from environment variables (the config file holds models and routes).

Every variable of the gateway's own is parsed here. Libraries' own conventions
are left to them: the provider calls honour ``HTTPS_PROXY``, ``NO_PROXY`` and
``REQUESTS_CA_BUNDLE`` as ``requests`` reads them (``workers.upstream``), and
``PROMETHEUS_MULTIPROC_DIR`` is prometheus-client's, chosen before it is imported
(``shared.metrics_directory``).

``Settings.from_env()`` reads every variable, collects all problems and raises
one ``ConfigError`` naming each bad variable, so a deployment is fixed in one
pass; ``Settings.read()`` hands back what parsed with the problems, for an entry
point that reports them together with the config file's. An empty variable
counts as unset. The GitLab token is never shown in ``repr``, and a password in
``REDIS_URL`` is masked there.

``test_knobs()`` holds the variables only the test suite sets (``TestKnobs``), read
here once per process like the others.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

from shared.config import DEFAULT_CONFIG_PATH, ConfigError, parse_bool
from shared.urls import parse_http_url

__all__ = ["ConfigError", "Settings", "TestKnobs", "test_knobs"]

LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Settings:
    gitlab_url: str | None = None
    gitlab_api_token: str | None = field(default=None, repr=False)
    port: int = 8080
    log_level: str = "info"  # debug | info | warning | error ("warn" is read as "warning")
    log_format: str = "text"  # text | json
    metrics_enabled: bool = True
    metrics_port: int = 9090
    config_file_path: str = DEFAULT_CONFIG_PATH
    redis_url: str = "redis://localhost:6379/0"
    max_body_bytes: int = 10 * 1024 * 1024
    log_dir: str | None = None
    web_concurrency: int = 2  # gunicorn processes
    # gunicorn threads per process: each waiting request or open stream holds one. Two processes of
    # 768 hold 1,000 open streams with room for gunicorn's uneven spread (docs/benchmarks.md, Capacity).
    web_threads: int = 768
    stream_keepalive_interval: float = 15.0  # seconds of provider silence before a stream's keep-alive
    host: str = "0.0.0.0"  # the address the API and its metrics listen on (`make run`: 127.0.0.1)
    web_connections: int = 4096  # open connections per gunicorn process (its worker_connections)
    forwarded_allow_ips: str = "127.0.0.1,::1"  # proxies whose X-Forwarded-For is believed (as gunicorn's)
    max_connections_per_address: int = 128  # connections one client may hold in one gunicorn process
    request_header_timeout: float = 10.0  # seconds to receive a request's head
    request_body_timeout: float = 60.0  # seconds to receive a request's body, from the end of its head
    response_write_timeout: float = 30.0  # seconds a response's write may wait for a client that does not read
    # `python -m workers` (its command line wins over these):
    worker_models: tuple[str, ...] = ()  # the models it serves; none named: every configured model
    worker_processes: int | None = None  # processes per model; None: each model's `workers`
    worker_concurrency: int | None = None  # jobs at once per process; None: each model's `concurrency`
    worker_metrics_port: int | None = None  # serve the workers' own /metrics here (a host without a web process)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        settings, problems = cls.read(environ)
        if problems:
            raise ConfigError(problems)
        return settings

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> tuple[Settings, list[str]]:
        """The settings every well-formed variable gives (a malformed one keeps its default),
        and one problem per malformed variable, the test knobs' included."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, variable, parse in _VARIABLES:
            raw = env.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                problems.append(f"{variable}: {exc}")
        try:
            TestKnobs.from_env(env)  # reported with the others, so a bad one stops the process at start
        except ConfigError as error:
            problems += error.problems
        return cls(**values), problems

    def __repr__(self) -> str:
        # Settings get logged at startup; a Redis password must not go with them.
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["redis_url"] = _mask_password(self.redis_url)
        return "Settings(" + ", ".join(f"{name}={value!r}" for name, value in shown.items()) + ")"


def _port(raw: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", raw) or not 1 <= int(raw) <= 65535:
        raise ValueError(f"must be an integer between 1 and 65535, got {raw!r}")
    return int(raw)


def _positive_int(raw: str) -> int:
    if not re.fullmatch(r"[0-9]+", raw) or int(raw) < 1:
        raise ValueError(f"must be a positive integer, got {raw!r}")
    return int(raw)


def _positive_seconds(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"must be a positive number of seconds, got {raw!r}")
    return seconds


def _host(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        pass
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", raw):
        raise ValueError(f"must be an IP address or a host name, got {raw!r}")
    return raw


def _address_list(raw: str) -> str:
    """Comma-separated IP addresses and CIDR networks, or ``*`` (gunicorn's forwarded_allow_ips)."""
    entries = [entry.strip() for entry in raw.split(",") if entry.strip()]
    if entries == ["*"]:
        return "*"
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(f"must be '*' or comma-separated IP addresses and CIDR networks, "
                             f"got {entry!r}") from None
    return ",".join(entries)


def _log_level(raw: str) -> str:
    level = raw.lower()
    level = "warning" if level == "warn" else level
    if level not in LOG_LEVELS:
        raise ValueError("must be one of " + ", ".join(LOG_LEVELS))
    return level


def _log_format(raw: str) -> str:
    if raw.lower() not in ("text", "json"):
        raise ValueError("must be one of text, json")
    return raw.lower()


def _boolean(raw: str) -> bool:
    try:
        return parse_bool(raw)
    except ValueError as exc:
        raise ValueError(f"{exc}, got {raw!r}") from None


def _names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _redis_url(raw: str) -> str:
    # The value is not echoed: it may carry a password.
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return raw


def _mask_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (sep and at and colon and password):
        return url
    return f"{scheme}://{user}:***@{host}"


def masked_url(url: str) -> str:
    """A URL fit to print (``python -m workers.inspect``, ``make run``): its password, if any, as ``***``."""
    return _mask_password(url)


_VARIABLES: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("gitlab_url", "GITLAB_URL", parse_http_url),
    ("gitlab_api_token", "GITLAB_API_TOKEN", str),
    ("port", "PORT", _port),
    ("log_level", "LOG_LEVEL", _log_level),
    ("log_format", "LOG_FORMAT", _log_format),
    ("metrics_enabled", "METRICS_ENABLED", _boolean),
    ("metrics_port", "METRICS_PORT", _port),
    ("config_file_path", "CONFIG_FILE_PATH", str),
    ("redis_url", "REDIS_URL", _redis_url),
    ("max_body_bytes", "MAX_BODY_BYTES", _positive_int),
    ("log_dir", "LOG_DIR", str),
    ("web_concurrency", "WEB_CONCURRENCY", _positive_int),
    ("web_threads", "WEB_THREADS", _positive_int),
    ("stream_keepalive_interval", "STREAM_KEEPALIVE_INTERVAL", _positive_seconds),
    ("host", "HOST", _host),
    ("web_connections", "WEB_CONNECTIONS", _positive_int),
    ("forwarded_allow_ips", "FORWARDED_ALLOW_IPS", _address_list),
    ("max_connections_per_address", "MAX_CONNECTIONS_PER_ADDRESS", _positive_int),
    ("request_header_timeout", "REQUEST_HEADER_TIMEOUT", _positive_seconds),
    ("request_body_timeout", "REQUEST_BODY_TIMEOUT", _positive_seconds),
    ("response_write_timeout", "RESPONSE_WRITE_TIMEOUT", _positive_seconds),
    ("worker_models", "WORKER_MODELS", _names),
    ("worker_processes", "WORKER_PROCESSES", _positive_int),
    ("worker_concurrency", "WORKER_CONCURRENCY", _positive_int),
    ("worker_metrics_port", "WORKER_METRICS_PORT", _port),
)


@dataclass(frozen=True)
class TestKnobs:
    """Knobs for the test suite only: they shorten what takes seconds or minutes in
    production, so that tests observe it quickly. Operators leave them unset; the
    README's environment table does not list them."""

    __test__ = False  # not a pytest test class, whatever its name

    window_scale: float = 1.0  # AIGW_TEST_WINDOW_SCALE: rate-limit periods times this (0.25: a "minute" of 15 s)
    heartbeat_interval: float = 10.0  # WORKER_HEARTBEAT_INTERVAL: seconds between a worker's heartbeats
    maintenance_interval: float = 15.0  # WORKER_MAINTENANCE_INTERVAL: seconds between registry clean-ups

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TestKnobs:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, variable in _TEST_KNOBS:
            raw = env.get(variable, "").strip()
            if raw:
                try:
                    values[name] = _positive_seconds(raw)
                except ValueError:
                    problems.append(f"{variable}: must be a positive number, got {raw!r}")
        if problems:
            raise ConfigError(problems)
        return cls(**values)


_TEST_KNOBS = (
    ("window_scale", "AIGW_TEST_WINDOW_SCALE"),
    ("heartbeat_interval", "WORKER_HEARTBEAT_INTERVAL"),
    ("maintenance_interval", "WORKER_MAINTENANCE_INTERVAL"),
)


@lru_cache(maxsize=1)
def test_knobs() -> TestKnobs:
    """This process's test knobs, read from its environment once (a malformed one is
    ignored here: ``Settings.from_env`` has already stopped the process for it)."""
    try:
        return TestKnobs.from_env()
    except ConfigError:
        return TestKnobs()


test_knobs.__test__ = False  # type: ignore[attr-defined]
