"""Vertex AI stand-in credentials, OAuth token endpoint, auth on model calls and command line, over loopback HTTP."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from sandbox.vertex import serve_in_thread
from sandbox.vertex_auth import SCOPE
from tests.harness import wait_for
from tests.unit.vertex_fixtures import MODEL_URL, fetch_token, generate, grant, signed_assertion

ROOT = Path(__file__).resolve().parents[2]


# --- credentials and tokens ----------------------------------------------------------------------


def test_credentials_file(standin):
    srv, base, path = standin
    info = json.loads(path.read_text())
    assert info["type"] == "service_account"
    assert info["project_id"] == "standin-project"
    assert info["client_email"] == "gateway@standin-project.iam.gserviceaccount.com"
    assert info["token_uri"] == f"{base}/token"
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert info["private_key_id"] and info["client_id"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_google_auth_gets_a_token(standin):
    srv, base, path = standin
    before = requests.get(f"{base}/_vertex/tokens", timeout=5).json()["issued"]
    credentials = service_account.Credentials.from_service_account_file(str(path), scopes=[SCOPE])
    credentials.refresh(Request())
    assert credentials.token.startswith("ya29.standin-")
    assert credentials.valid
    assert requests.get(f"{base}/_vertex/tokens", timeout=5).json() == {"issued": before + 1}


def test_token_answer_shape(standin):
    srv, base, path = standin
    signer = crypt.RSASigner.from_service_account_file(str(path))
    answer = grant(base, signed_assertion(signer, aud=f"{base}/token"))  # its own token URI works too
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"].startswith("ya29.standin-")


@pytest.mark.parametrize("case", ["garbage", "other_key", "wrong_aud", "wrong_iss", "expired", "no_scope"])
def test_bad_assertions_are_refused(standin, case):
    srv, base, path = standin
    signer = crypt.RSASigner.from_service_account_file(str(path))
    if case == "garbage":
        assertion = "abc.def.ghi"
    elif case == "other_key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        assertion = signed_assertion(crypt.RSASigner.from_string(pem, key_id=signer.key_id))
    elif case == "wrong_aud":
        assertion = signed_assertion(signer, aud="https://elsewhere.example/token")
    elif case == "wrong_iss":
        assertion = signed_assertion(signer, iss="intruder@example.iam.gserviceaccount.com")
    elif case == "expired":
        assertion = signed_assertion(signer, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    else:
        assertion = signed_assertion(signer, scope="https://www.googleapis.com/auth/userinfo.email")
    answer = grant(base, assertion)
    assert answer.status_code == 400
    assert answer.json()["error"] == ("invalid_scope" if case == "no_scope" else "invalid_grant")


def test_wrong_grant_type(standin):
    srv, base, path = standin
    answer = grant(base, "x", grant_type="client_credentials")
    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


def test_expired_token_is_refused(tmp_path):
    path = tmp_path / "sa.json"
    srv, base = serve_in_thread(credentials_path=str(path), token_ttl=0.5)
    try:
        token = fetch_token(path)
        assert generate(base, token, "hi").status_code == 200
        # A Response is falsy when not ok, so poll for its body instead.
        refused = wait_for(lambda: (r := generate(base, token, "hi")).status_code == 401 and r.json(),
                           timeout=10, message="the token to expire")
        assert refused == {"error": {
            "code": 401, "status": "UNAUTHENTICATED", "message": refused["error"]["message"]}}
        assert "authentication credentials" in refused["error"]["message"]
        assert generate(base, fetch_token(path), "hi").status_code == 200  # a fresh one works
    finally:
        srv.stop()


@pytest.mark.parametrize("header", [None, "Bearer ya29.made-up", "Basic dXNlcjpwYXNz"])
def test_model_calls_need_an_issued_token(standin, header):
    srv, base, path = standin
    headers = {"Authorization": header} if header else {}
    answer = requests.post(f"{base}{MODEL_URL}:generateContent", headers=headers, timeout=10,
                           json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert answer.status_code == 401
    assert answer.json()["error"]["status"] == "UNAUTHENTICATED"


# --- command line --------------------------------------------------------------------------------


def test_command_line(tmp_path):
    path = tmp_path / "cli-sa.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.vertex", "--port", "0", "--write-credentials", str(path),
         "--token-ttl", "120"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("vertex stand-in listening on http://127.0.0.1:")
        base = line.rsplit(" ", 1)[1]
        assert json.loads(path.read_text())["token_uri"] == f"{base}/token"
        credentials = service_account.Credentials.from_service_account_file(str(path), scopes=[SCOPE])
        credentials.refresh(Request())
        assert generate(base, credentials.token, "cli").json()["candidates"][0]["content"]["parts"][0]["text"] == (
            "Sandbox reply: cli")
        grant_answer = grant(base, signed_assertion(crypt.RSASigner.from_service_account_file(str(path))))
        assert grant_answer.json()["expires_in"] == 120
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert out == ""  # exactly one stdout line, already read
    assert "VERTEX STAND-IN: canned answers, not Google" in err
    assert proc.returncode == 0
