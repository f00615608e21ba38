"""Process settings from environment variables."""

from __future__ import annotations

import pytest

import shared.config
from shared.settings import ConfigError, Settings

TOKEN = "glpat-SECRET-token-0123"


def problems(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    return info.value.problems


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.gitlab_url, settings.gitlab_api_token, settings.port) == (None, None, 8080)
    assert (settings.log_level, settings.log_format, settings.metrics_enabled) == ("info", "text", True)
    assert (settings.metrics_port, settings.config_file_path) == (9090, "/etc/ai-gateway/config.yaml")
    assert (settings.redis_url, settings.max_body_bytes, settings.log_dir) == (
        "redis://localhost:6379/0", 10 * 1024 * 1024, None)
    assert (settings.web_concurrency, settings.web_threads, settings.stream_keepalive_interval) == (2, 768, 15.0)
    assert (settings.host, settings.web_connections, settings.forwarded_allow_ips) == (
        "0.0.0.0", 4096, "127.0.0.1,::1")
    assert settings.max_connections_per_address == 128
    assert (settings.request_header_timeout, settings.request_body_timeout, settings.response_write_timeout) == (
        10.0, 60.0, 30.0)


def test_every_variable_is_read() -> None:
    settings = Settings.from_env({
        "GITLAB_URL": "https://gitlab.example.com/",
        "GITLAB_API_TOKEN": TOKEN,
        "PORT": "8000",
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "JSON",
        "METRICS_ENABLED": "off",
        "METRICS_PORT": "9100",
        "CONFIG_FILE_PATH": "/srv/gw.yaml",
        "REDIS_URL": "rediss://redis.internal:6380/2",
        "MAX_BODY_BYTES": "2048",
        "LOG_DIR": "/var/log/gw",
        "WEB_CONCURRENCY": "3",
        "WEB_THREADS": "100",
        "STREAM_KEEPALIVE_INTERVAL": "0.5",
        "HOST": "127.0.0.1",
        "WEB_CONNECTIONS": "2000",
        "FORWARDED_ALLOW_IPS": " 10.0.0.0/8 , 192.0.2.7,2001:db8::/32",
        "MAX_CONNECTIONS_PER_ADDRESS": "256",
        "REQUEST_HEADER_TIMEOUT": "5",
        "REQUEST_BODY_TIMEOUT": "30.5",
        "RESPONSE_WRITE_TIMEOUT": "12",
    })
    assert settings == Settings(
        gitlab_url="https://gitlab.example.com", gitlab_api_token=TOKEN, port=8000, log_level="debug",
        log_format="json", metrics_enabled=False, metrics_port=9100, config_file_path="/srv/gw.yaml",
        redis_url="rediss://redis.internal:6380/2", max_body_bytes=2048, log_dir="/var/log/gw",
        web_concurrency=3, web_threads=100, stream_keepalive_interval=0.5, host="127.0.0.1",
        web_connections=2000, forwarded_allow_ips="10.0.0.0/8,192.0.2.7,2001:db8::/32",
        max_connections_per_address=256, request_header_timeout=5.0, request_body_timeout=30.5,
        response_write_timeout=12.0,
    )


@pytest.mark.parametrize(("raw", "expected"), [
    ("0.0.0.0", "0.0.0.0"), ("::", "::"), ("[::1]", "::1"), ("localhost", "localhost"),
    ("api.internal.example.com", "api.internal.example.com"),
])
def test_host(raw: str, expected: str) -> None:
    assert Settings.from_env({"HOST": raw}).host == expected


def test_forwarded_allow_ips_may_trust_everyone() -> None:
    assert Settings.from_env({"FORWARDED_ALLOW_IPS": " * "}).forwarded_allow_ips == "*"


def test_empty_values_count_as_unset() -> None:
    env = {name: "" for name in ("GITLAB_URL", "GITLAB_API_TOKEN", "PORT", "LOG_LEVEL", "METRICS_ENABLED",
                                 "REDIS_URL", "MAX_BODY_BYTES", "LOG_DIR")}
    env["PORT"] = "  "
    assert Settings.from_env(env) == Settings()


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("LOG_DIR", "/tmp/logs")
    settings = Settings.from_env()
    assert (settings.port, settings.log_dir) == (8123, "/tmp/logs")


@pytest.mark.parametrize(("raw", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("On", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("OFF", False),
])
def test_boolean_words(raw: str, expected: bool) -> None:
    assert Settings.from_env({"METRICS_ENABLED": raw}).metrics_enabled is expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("debug", "debug"), ("Info", "info"), ("warn", "warning"), ("WARNING", "warning"), ("error", "error"),
])
def test_log_level_is_normalised(raw: str, expected: str) -> None:
    assert Settings.from_env({"LOG_LEVEL": raw}).log_level == expected


@pytest.mark.parametrize("url", ["redis://localhost", "rediss://:pw@cache:6380/1", "unix:///run/redis.sock"])
def test_redis_url_schemes(url: str) -> None:
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url


INVALID = {
    "port-word": ({"PORT": "abc"}, "PORT: must be an integer between 1 and 65535, got 'abc'"),
    "port-zero": ({"PORT": "0"}, "PORT: must be an integer between 1 and 65535, got '0'"),
    "port-high": ({"PORT": "65536"}, "PORT: must be an integer between 1 and 65535, got '65536'"),
    "port-negative": ({"PORT": "-1"}, "PORT: must be an integer between 1 and 65535, got '-1'"),
    "metrics-port": ({"METRICS_PORT": "9o9o"},
                     "METRICS_PORT: must be an integer between 1 and 65535, got '9o9o'"),
    "log-level": ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL: must be one of debug, info, warning, error"),
    "log-format": ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: must be one of text, json"),
    "metrics-enabled": ({"METRICS_ENABLED": "maybe"},
                        "METRICS_ENABLED: must be true or false (or 1/0, yes/no, on/off), got 'maybe'"),
    "gitlab-url-scheme": ({"GITLAB_URL": "gitlab.example.com"},
                          "GITLAB_URL: must be an http or https URL, got 'gitlab.example.com'"),
    "gitlab-url-ftp": ({"GITLAB_URL": "ftp://gitlab.example.com"},
                       "GITLAB_URL: must be an http or https URL, got 'ftp://gitlab.example.com'"),
    "redis-url": ({"REDIS_URL": "http://redis:6379"}, "REDIS_URL: must start with redis://, rediss:// or unix://"),
    "max-body-zero": ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES: must be a positive integer, got '0'"),
    "max-body-word": ({"MAX_BODY_BYTES": "10MB"}, "MAX_BODY_BYTES: must be a positive integer, got '10MB'"),
    "web-concurrency": ({"WEB_CONCURRENCY": "two"}, "WEB_CONCURRENCY: must be a positive integer, got 'two'"),
    "web-threads-zero": ({"WEB_THREADS": "0"}, "WEB_THREADS: must be a positive integer, got '0'"),
    "keepalive-word": ({"STREAM_KEEPALIVE_INTERVAL": "15s"},
                       "STREAM_KEEPALIVE_INTERVAL: must be a positive number of seconds, got '15s'"),
    "keepalive-zero": ({"STREAM_KEEPALIVE_INTERVAL": "0"},
                       "STREAM_KEEPALIVE_INTERVAL: must be a positive number of seconds, got '0'"),
    "keepalive-nan": ({"STREAM_KEEPALIVE_INTERVAL": "nan"},
                      "STREAM_KEEPALIVE_INTERVAL: must be a positive number of seconds, got 'nan'"),
    "host": ({"HOST": "0.0.0.0:8080"}, "HOST: must be an IP address or a host name, got '0.0.0.0:8080'"),
    "forwarded-allow-ips": ({"FORWARDED_ALLOW_IPS": "10.0.0.1,proxy"},
                            "FORWARDED_ALLOW_IPS: must be '*' or comma-separated IP addresses and CIDR networks, "
                            "got 'proxy'"),
    "forwarded-allow-ips-star-and-more": ({"FORWARDED_ALLOW_IPS": "*,10.0.0.1"},
                                          "FORWARDED_ALLOW_IPS: must be '*' or comma-separated IP addresses and "
                                          "CIDR networks, got '*'"),
    "max-connections-zero": ({"MAX_CONNECTIONS_PER_ADDRESS": "0"},
                             "MAX_CONNECTIONS_PER_ADDRESS: must be a positive integer, got '0'"),
    "web-connections": ({"WEB_CONNECTIONS": "many"}, "WEB_CONNECTIONS: must be a positive integer, got 'many'"),
    "header-timeout": ({"REQUEST_HEADER_TIMEOUT": "10s"},
                       "REQUEST_HEADER_TIMEOUT: must be a positive number of seconds, got '10s'"),
    "body-timeout": ({"REQUEST_BODY_TIMEOUT": "0"},
                     "REQUEST_BODY_TIMEOUT: must be a positive number of seconds, got '0'"),
    "write-timeout": ({"RESPONSE_WRITE_TIMEOUT": "-1"},
                      "RESPONSE_WRITE_TIMEOUT: must be a positive number of seconds, got '-1'"),
    "worker-processes": ({"WORKER_PROCESSES": "0"}, "WORKER_PROCESSES: must be a positive integer, got '0'"),
    "worker-concurrency": ({"WORKER_CONCURRENCY": "lots"},
                           "WORKER_CONCURRENCY: must be a positive integer, got 'lots'"),
    "worker-metrics-port": ({"WORKER_METRICS_PORT": "70000"},
                            "WORKER_METRICS_PORT: must be an integer between 1 and 65535, got '70000'"),
}


@pytest.mark.parametrize(("env", "expected"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_variable_is_named(env: dict[str, str], expected: str) -> None:
    assert problems(env) == [expected]


def test_all_problems_are_reported_together() -> None:
    error_lines = problems({"PORT": "abc", "LOG_FORMAT": "xml", "REDIS_URL": "tcp://x", "LOG_DIR": "/ok"})
    assert error_lines == [
        "PORT: must be an integer between 1 and 65535, got 'abc'",
        "LOG_FORMAT: must be one of text, json",
        "REDIS_URL: must start with redis://, rediss:// or unix://",
    ]


def test_the_workers_variables() -> None:
    settings = Settings.from_env({"WORKER_MODELS": " chat, ,claude ", "WORKER_PROCESSES": "3",
                                  "WORKER_CONCURRENCY": "32", "WORKER_METRICS_PORT": "9091"})
    assert (settings.worker_models, settings.worker_processes, settings.worker_concurrency,
            settings.worker_metrics_port) == (("chat", "claude"), 3, 32, 9091)
    assert (Settings().worker_models, Settings().worker_processes, Settings().worker_concurrency,
            Settings().worker_metrics_port) == ((), None, None, None)


def test_read_keeps_what_parsed_beside_the_problems() -> None:
    """An entry point reports the environment's problems with the config file's, read from
    CONFIG_FILE_PATH even when another variable is malformed."""
    settings, found = Settings.read({"PORT": "abc", "CONFIG_FILE_PATH": "/srv/gw.yaml", "WEB_THREADS": "8",
                                     "AIGW_TEST_WINDOW_SCALE": "fast"})
    assert found == ["PORT: must be an integer between 1 and 65535, got 'abc'",
                     "AIGW_TEST_WINDOW_SCALE: must be a positive number, got 'fast'"]
    assert (settings.port, settings.config_file_path, settings.web_threads) == (8080, "/srv/gw.yaml", 8)
    assert Settings.read({}) == (Settings(), [])


def test_config_error_is_the_config_module_class() -> None:
    assert ConfigError is shared.config.ConfigError
    with pytest.raises(shared.config.ConfigError, match=r"^PORT: .*\nLOG_FORMAT: "):
        Settings.from_env({"PORT": "x", "LOG_FORMAT": "y"})


def test_repr_hides_token_and_redis_password() -> None:
    settings = Settings.from_env({"GITLAB_API_TOKEN": TOKEN, "REDIS_URL": "redis://gw:p@ss@redis:6379/0",
                                  "GITLAB_URL": "https://gitlab.example.com"})
    assert settings.gitlab_api_token == TOKEN
    assert settings.redis_url == "redis://gw:p@ss@redis:6379/0"
    text = repr(settings)
    assert TOKEN not in text and "p@ss" not in text
    assert "redis_url='redis://gw:***@redis:6379/0'" in text
    assert "gitlab_url='https://gitlab.example.com'" in text


def test_redis_password_is_never_echoed_in_problems() -> None:
    assert "hunter2" not in "\n".join(problems({"REDIS_URL": "http://:hunter2@redis"}))
