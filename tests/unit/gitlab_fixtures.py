"""HTTP helpers shared by the GitLab stand-in tests (test_sandbox_gitlab*.py); the stand-in
itself comes from the ``gitlab`` and ``gitlab_url`` fixtures (tests/unit/conftest.py)."""

from __future__ import annotations

import requests

from sandbox.gitlab_data import ADMIN_TOKEN


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
