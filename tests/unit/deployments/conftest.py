"""A model's deployments in a worker (workers.deployments) and the shared breaker (shared.breaker), against
an embedded Redis and sandbox provider instances in threads: no mocks. The processes' view (several worker
processes, the API's /ready and headers) is tests/integration/test_deployments.py's.

Here: three sandbox providers for the module, each reset before every test."""

from __future__ import annotations

import pytest
import requests

from sandbox.provider import serve_in_thread


@pytest.fixture(scope="module")
def providers():
    started = [serve_in_thread() for _ in range(3)]
    yield [url for _, url in started]
    for server, _ in started:
        server.stop()


@pytest.fixture(autouse=True)
def fresh(providers):
    for url in providers:
        requests.post(f"{url}/_sandbox/reset", timeout=5).raise_for_status()
