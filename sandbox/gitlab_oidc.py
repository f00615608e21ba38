"""The GitLab stand-in's OIDC side: the keys a self-managed GitLab signs its AI-gateway token with,
published as GitLab publishes them, and test controls to rotate them and to mint tokens.

What GitLab does and this models (../shared/duo-protocol.md 4.1-4.2):

- ``GET /.well-known/openid-configuration``: doorkeeper-openid_connect's discovery document
  (app/controllers/doorkeeper/openid_connect/discovery_controller.rb), whose ``jwks_uri`` is
  ``{GitLab URL}/oauth/discovery/keys`` and ``issuer`` the GitLab URL.
- ``GET /oauth/discovery/keys``: ``{"keys": [...]}``, each ``{kty, kid, e, n, use: "sig", alg:
  "RS256"}``, holding GitLab's OIDC signing key, its CI ID-token key and every Cloud Connector key,
  with ``Cache-Control: max-age=86400, public, must-revalidate, no-transform``
  (app/controllers/jwks_controller.rb, ee/app/controllers/ee/jwks_controller.rb). The stand-in
  publishes an "OIDC" key that signs nothing here, then the Cloud Connector keys, oldest first;
  a ``kid`` is the key's RFC 7638 SHA-256 thumbprint.
- The token (``Gitlab::CloudConnector::JsonWebToken``, ee/lib/gitlab/cloud_connector/json_web_token.rb):
  RS256, header ``{typ: "JWT", kid}``, claims ``jti, aud, sub, iss, iat, nbf = iat - 5, exp = iat +
  3600, gitlab_realm, scopes``; ``sub`` the instance id. The stand-in's instance is ``INSTANCE_ID``.

Controls (no auth, never faulted):

    POST /_gitlab/oidc/rotate {"drop_old": false}  a new Cloud Connector key signs from now on
                                                   (GitLab's cloud_connector:keys:rotate); drop_old
                                                   unpublishes the others (cloud_connector:keys:trim)
    POST /_gitlab/oidc/token {"claims": {...}, "key": "current", "kid": "...", "alg": "RS256"}
        -> {"token": "<JWT>"}: Rails's claims for INSTANCE_ID, each given claim replacing its
        default (null removes it); key "current" (default), "oidc" (published, but not a Cloud
        Connector key) or "unpublished" (a key GitLab never published); kid replaces the
        header's (null leaves it out)

``/_gitlab/reset`` brings back the first key set.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

INSTANCE_ID = "292c3c7c-c5d5-48ec-b4bf-f00b724ce560"  # the stand-in's ApplicationSetting#uuid
REALM = "self-managed"
AUDIENCE = "gitlab-ai-gateway"
# What an 18.x self-managed instance with Duo Enterprise puts in scopes (TokenIssuer#available_unit_primitives).
DEFAULT_SCOPES = ("complete_code", "generate_code", "duo_chat", "duo_classic_chat", "explain_code",
                  "refactor_code", "fix_code", "write_tests", "documentation_search")
TOKEN_TTL = 3600
JWKS_CACHE_CONTROL = "max-age=86400, public, must-revalidate, no-transform"
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/oauth/discovery/keys"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey) -> dict:
    """The key as GitLab's JWKS lists it, its kid the RFC 7638 thumbprint."""
    numbers = key.public_key().public_numbers()
    e, n = _b64(numbers.e), _b64(numbers.n)
    canonical = json.dumps({"e": e, "kty": "RSA", "n": n}, separators=(",", ":"), sort_keys=True)
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    return {"kty": "RSA", "kid": kid, "e": e, "n": n, "use": "sig", "alg": "RS256"}


class OIDCKeys:
    """The stand-in's keys: one OIDC key and its Cloud Connector keys, the newest signing."""

    def __init__(self):
        self.lock = threading.Lock()
        self._oidc = _new_key()
        self._first = _new_key()
        self._unpublished = _new_key()
        self._connector = [self._first]

    def reset(self) -> None:
        with self.lock:
            self._connector = [self._first]

    def rotate(self, drop_old: bool = False) -> dict:
        key = _new_key()
        with self.lock:
            self._connector = [key] if drop_old else [*self._connector, key]
        return public_jwk(key)

    def jwks(self) -> dict:
        with self.lock:
            keys = [self._oidc, *self._connector]
        return {"keys": [public_jwk(key) for key in keys]}

    def token(self, issuer: str, body: dict) -> str:
        """A token as ``POST /_gitlab/oidc/token`` describes it (see the module docstring)."""
        if not isinstance(body, dict) or set(body) - {"claims", "key", "kid", "alg"}:
            raise ValueError("send {\"claims\": {...}, \"key\": ..., \"kid\": ..., \"alg\": ...}")
        given = body.get("claims") or {}
        if not isinstance(given, dict):
            raise ValueError("'claims' must be an object")
        with self.lock:
            keys = {"current": self._connector[-1], "oidc": self._oidc, "unpublished": self._unpublished}
        key = keys.get(body.get("key", "current"))
        if key is None:
            raise ValueError(f"'key' must be one of {sorted(keys)}")
        now = int(time.time())
        claims = {"jti": str(uuid.uuid4()), "aud": [AUDIENCE], "sub": INSTANCE_ID, "iss": issuer, "iat": now,
                  "nbf": now - 5, "exp": now + TOKEN_TTL, "gitlab_realm": REALM, "scopes": list(DEFAULT_SCOPES)}
        for name, value in given.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        header = {"typ": "JWT", "kid": public_jwk(key)["kid"]}
        if "kid" in body:
            header.pop("kid")
            if body["kid"] is not None:
                header["kid"] = str(body["kid"])
        alg = body.get("alg", "RS256")
        if alg == "HS256":
            return _hmac_token(claims, header, key)
        if alg != "RS256":
            raise ValueError("'alg' must be RS256 or HS256")
        return jwt.encode(claims, key, algorithm="RS256", headers=header)


def _hmac_token(claims: dict, header: dict, key: rsa.RSAPrivateKey) -> str:
    """The classic forgery: HS256 with the public key's PEM as the secret, which a validator that
    lets the token name its algorithm would accept (PyJWT refuses to make one, so by hand)."""
    def part(data) -> bytes:
        raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    secret = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = part({**header, "alg": "HS256"}) + b"." + part(claims)
    return (signing_input + b"." + part(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


def discovery(base_url: str) -> dict:
    """GitLab's discovery document (the fields doorkeeper-openid_connect sends; GitLab's values)."""
    return {
        "issuer": base_url,
        "authorization_endpoint": f"{base_url}/oauth/authorize",
        "token_endpoint": f"{base_url}/oauth/token",
        "revocation_endpoint": f"{base_url}/oauth/revoke",
        "introspection_endpoint": f"{base_url}/oauth/introspect",
        "userinfo_endpoint": f"{base_url}/oauth/userinfo",
        "jwks_uri": f"{base_url}{JWKS_PATH}",
        "scopes_supported": ["api", "read_api", "read_user", "openid", "profile", "email"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "grant_types_supported": ["authorization_code", "password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claim_types_supported": ["normal"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "sub_legacy", "name", "nickname",
                             "preferred_username", "email", "email_verified", "website", "profile",
                             "picture", "groups", "groups_direct", "https://gitlab.org/claims/groups/owner",
                             "https://gitlab.org/claims/groups/maintainer",
                             "https://gitlab.org/claims/groups/developer"],
        "code_challenge_methods_supported": ["plain", "S256"],
    }
