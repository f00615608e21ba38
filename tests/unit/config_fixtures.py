"""Shared builders and example data for the config tests (test_config_*.py); ``ca_file`` is a
fixture of tests/unit/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigError, parse_config

OPENAI_KEY = "sk-test-openai-SECRET-1234"
ANTHROPIC_KEY = "sk-ant-test-SECRET-5678"
KEYS = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
NO_ROUTES_WARNING = "no routes configured: every caller may use every model by its own name"

FULL_YAML = """
models:
  - name: "openai-gpt4"          # unique; also the name of this model's queue
    type: "openai"
    base_url: "https://api.openai.com/v1/"
    api_key: "${OPENAI_API_KEY}"
    model: "gpt-4o"
    timeout: 45s
    rate_limit:
      requests_per_minute: 1000
      tokens_per_minute: 90000
      requests_per_day: 20000
    retries: {attempts: 5}
    workers: 2
    max_queue_depth: 500
    verify_tls: false
    ca_file: CA_FILE
    max_output_tokens: 2048
  - name: claude
    type: anthropic
  - name: local-llama
    type: generic
    base_url: http://llm.internal:8000/v1
routes:
  - name: "project-123-gpt4"
    match: {gitlab_project_id: "123", model_name: "openai-gpt4"}
    destination: "openai-gpt4"
    rate_limit: {requests_per_minute: 200, per: user}
  - match: {gitlab_group_id: [7, "8"], model_name: claude}
gitlab:
  timeout: 5s
  verify_tls: false
  ca_file: CA_FILE
  min_access_level: 20
  cache_ttl: 2m
  outage_grace: 15m
jobs:
  result_ttl: 90s
  failure_ttl: 1d
logging:
  log_payloads: true
"""


def model(**fields: object) -> dict:
    return {"name": "local", "type": "generic", "base_url": "http://llm.internal:8000/v1", **fields}


def config_with(*models: dict, **top: object) -> dict:
    return {"models": list(models) or [model()], "routes": [], **top}


def problems(data: object, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, {} if env is None else env)
    return info.value.problems


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path

