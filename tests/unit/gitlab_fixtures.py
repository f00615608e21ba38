"""Fixtures and HTTP helpers shared by the GitLab stand-in tests (test_sandbox_gitlab*.py).

pytest finds fixtures by name in the test module, so a test module binds the ones it uses, e.g.
``server, base = gitlab_fixtures.server, gitlab_fixtures.base`` (``base`` needs ``server``).
"""

from __future__ import annotations

import pytest
import requests

from sandbox.gitlab import serve_in_thread
from sandbox.gitlab_data import ADMIN_TOKEN


@pytest.fixture(scope="module")
def server():
    srv, base = serve_in_thread()
    yield srv, base
    srv.stop()


@pytest.fixture
def base(server):
    srv, url = server
    srv.reset()
    yield url
    srv.reset()


def get(base, path, token=None, how="private", timeout=10):
    headers = {}
    if token is not None:
        name, value = {"private": ("PRIVATE-TOKEN", token), "bearer": ("Authorization", f"Bearer {token}"),
                       "job": ("JOB-TOKEN", token)}[how]
        headers[name] = value
    return requests.get(f"{base}{path}", headers=headers, timeout=timeout)


def ok(base, path, token=ADMIN_TOKEN, how="private"):
    response = get(base, path, token, how)
    assert response.status_code == 200, response.text
    return response.json()
