"""HTTP helpers shared by the Vertex AI stand-in tests (test_sandbox_vertex*.py); the stand-in
itself comes from the ``standin`` and ``token`` fixtures (tests/unit/conftest.py)."""

from __future__ import annotations

import json
import time

import requests
from google.auth import jwt
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from sandbox.vertex_auth import CLIENT_EMAIL, GOOGLE_TOKEN_URI, JWT_GRANT, SCOPE

MODEL_URL = "/v1/projects/standin-project/locations/us-central1/publishers/google/models/gemini-test"


def fetch_token(path) -> str:
    credentials = service_account.Credentials.from_service_account_file(str(path), scopes=[SCOPE])
    credentials.refresh(Request())
    return credentials.token



def generate(base, token, text, method="generateContent", *, request_id=None, **extra):
    body = {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if request_id:
        headers["X-Request-Id"] = request_id
    return requests.post(f"{base}{MODEL_URL}:{method}", json=body, headers=headers, timeout=10,
                         stream=method.startswith("stream"))


def sse_events(response) -> list[dict]:
    raw = response.raw.read()
    chunks = raw.split(b"\r\n\r\n")
    assert chunks[-1] == b"", "every event ends with a blank line"
    assert all(c.startswith(b"data: ") for c in chunks[:-1])
    return [json.loads(c[len(b"data: "):]) for c in chunks[:-1]]


def signed_assertion(signer, **claims) -> str:
    now = int(time.time())
    payload = {"iss": CLIENT_EMAIL, "aud": GOOGLE_TOKEN_URI, "iat": now, "exp": now + 3600, "scope": SCOPE, **claims}
    return jwt.encode(signer, payload).decode()


def grant(base, assertion, grant_type=JWT_GRANT):
    return requests.post(f"{base}/token", data={"grant_type": grant_type, "assertion": assertion}, timeout=10)
