"""What GitLab sends a GitLab Duo endpoint, for the tests of it (unit and integration): the instance's
token, minted by the GitLab stand-in with its published key (``sandbox.gitlab_oidc``), and the
headers of an 18.x instance (../shared/duo-protocol.md 2 and 6, read in GitLab's Rails source)."""

from __future__ import annotations

import uuid

import requests

from sandbox.gitlab_oidc import INSTANCE_ID

# GitLab's pseudonymous id of the user (x-gitlab-global-user-id: base64 of a SHA-256), sent by 17.x and 18.x.
GLOBAL_USER_ID = "Df0Jhs9xlbetQR8YoZCKDZJflhxO0ZBI8uoRzmpnd1w="


def mint(gitlab, **body) -> str:
    """A token the stand-in signs: ``body`` is its POST /_gitlab/oidc/token request (``claims``,
    ``key``, ``kid``). ``gitlab``: the stand-in's URL, or a ``Stack`` that runs one."""
    url = getattr(gitlab, "gitlab_url", gitlab)
    response = requests.post(f"{url}/_gitlab/oidc/token", json=body, timeout=10)
    response.raise_for_status()
    return response.json()["token"]


def headers_18(token: str | None, **changes) -> dict:
    """What GitLab 18.x sends, lower-case as it spells them, for user 2 (alice), with a fresh
    ``X-Request-ID``. ``changes``: a header (``_`` for ``-``, any case) set to a value, or None to
    leave it out."""
    found = {"Authorization": f"Bearer {token}", "X-Gitlab-Authentication-Type": "oidc",
             "x-gitlab-instance-id": INSTANCE_ID, "x-gitlab-realm": "self-managed", "x-gitlab-user-id": "2",
             "x-gitlab-global-user-id": GLOBAL_USER_ID, "x-gitlab-version": "18.9.0",
             "x-gitlab-host-name": "gitlab.example.com", "X-Request-ID": uuid.uuid4().hex}
    for name, value in changes.items():
        name = name.replace("_", "-")
        found = {k: v for k, v in found.items() if k.lower() != name.lower()}
        if value is not None:
            found[name] = value
    return found
