"""Integration tests run the real thing: a Redis of their own, gunicorn, RQ worker
processes and the sandbox provider as a real HTTP server on loopback."""

from __future__ import annotations

import pytest

from tests.harness import Stack

CORE_CONFIG = """
models:
  - name: chat
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 4s
    retries: {attempts: 3}
    workers: 2
  - name: gpt
    type: openai
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: gpt-4o-upstream
    timeout: 10s
    workers: 1
  - name: claude
    type: anthropic
    base_url: "{sandbox}"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: claude-upstream
    timeout: 5s
    workers: 1
  - name: solo
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 2s
    workers: 1
    concurrency: 1
    max_queue_depth: 1
  - name: wrong-key
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "sk-not-the-right-key"
    timeout: 3s
    workers: 1
  - name: later
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 2s
    workers: 0
jobs:
  result_ttl: 30s
  failure_ttl: 2m
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("stack"), CORE_CONFIG, web_workers=2, web_threads=16,
               env={"MAX_BODY_BYTES": "65536"}) as gateway:
        yield gateway
