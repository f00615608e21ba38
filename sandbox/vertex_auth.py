"""Service-account side of the Vertex stand-in: its RSA key and JSON key file, the JWT-bearer grant
its ``/token`` endpoint answers, and the access tokens model calls must carry.

No HTTP here: ``sandbox.vertex`` serves ``ServiceAccount.grant`` at ``/token`` and checks bearers with
``ServiceAccount.token_valid``.
"""

from __future__ import annotations

import base64
import json
import math
import os
import secrets
import threading
import time
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PROJECT_ID = "standin-project"
CLIENT_EMAIL = f"gateway@{PROJECT_ID}.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always sets `aud` to Google's token endpoint, whatever the key file's token_uri says.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
CLOCK_SKEW = 60  # seconds of iat in the future Google tolerates


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_assertion(assertion: str, public_key, *, issuer: str, audiences: tuple[str, ...],
                     key_id: str | None = None, now: float | None = None) -> dict:
    """Check an RS256 JWT-bearer assertion as Google's token endpoint does; return its claims."""
    now = time.time() if now is None else now
    try:
        head_b64, claims_b64, sig_b64 = assertion.split(".")
        header = json.loads(_b64url_decode(head_b64))
        claims = json.loads(_b64url_decode(claims_b64))
        signature = _b64url_decode(sig_b64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed JWT ({exc.__class__.__name__})") from None
    if not isinstance(header, dict) or not isinstance(claims, dict) or header.get("alg") != "RS256":
        raise ValueError("the JWT must be an RS256-signed object")
    if key_id is not None and header.get("kid") not in (None, key_id):
        raise ValueError("unknown signing key id")
    try:
        public_key.verify(signature, f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise ValueError("Invalid JWT Signature.") from None
    if claims.get("iss") != issuer:
        raise ValueError("Invalid JWT: unknown issuer")
    if claims.get("aud") not in audiences:
        raise ValueError("Invalid JWT: the audience must be the token URI")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not (isinstance(exp, int | float) and isinstance(iat, int | float)) or not (
            iat - CLOCK_SKEW <= now < exp and exp - iat <= 3600):
        raise ValueError("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe")
    return claims


class ServiceAccount:
    """The stand-in's one service account: a fresh RSA key, and the access tokens issued for it."""

    def __init__(self, token_ttl: float = 3600):
        self.token_ttl = token_ttl
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(20)
        self.lock = threading.Lock()
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.issued = 0

    def key_file(self, base_url: str, token_uri: str) -> dict:
        """The JSON key file Google would let you download, pointing google-auth at ``token_uri``."""
        pem = self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode()
        return {"type": "service_account", "project_id": PROJECT_ID, "private_key_id": self.key_id,
                "private_key": pem, "client_email": CLIENT_EMAIL, "client_id": "1" + "0" * 20,
                "auth_uri": f"{base_url}/auth", "token_uri": token_uri, "universe_domain": "googleapis.com"}

    def write_key_file(self, path: str, base_url: str, token_uri: str) -> None:
        # A private key: readable by the owner only, like a downloaded key file should be.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.key_file(base_url, token_uri), fh, indent=2)

    def grant(self, form_body: bytes, token_uri: str) -> tuple[int, dict]:
        """Answer a POST to the token endpoint: (HTTP status, OAuth2 JSON body)."""
        form = parse_qs(form_body.decode("utf-8", "replace"))
        if form.get("grant_type", [""])[0] != JWT_GRANT:
            return 400, {"error": "unsupported_grant_type", "error_description": f"use {JWT_GRANT}"}
        try:
            claims = verify_assertion(form.get("assertion", [""])[0], self.private_key.public_key(),
                                      issuer=CLIENT_EMAIL, key_id=self.key_id,
                                      audiences=(token_uri, GOOGLE_TOKEN_URI))
        except ValueError as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        if SCOPE not in str(claims.get("scope", "")).split():
            return 400, {"error": "invalid_scope", "error_description": f"ask for {SCOPE}"}
        token = self.issue_token()
        expires_in = max(1, math.ceil(self.token_ttl))
        return 200, {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}

    def issue_token(self) -> str:
        token = "ya29.standin-" + secrets.token_urlsafe(24)
        now = time.monotonic()
        with self.lock:
            for old in [t for t, expiry in self.tokens.items() if expiry <= now]:
                del self.tokens[old]
            self.tokens[token] = now + self.token_ttl
            self.issued += 1
        return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            return self.tokens.get(token, 0.0) > time.monotonic()
