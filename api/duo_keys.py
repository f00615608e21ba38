"""The GitLab instance's signing keys, and the check of a JWT's signature against them.

A self-managed GitLab signs the token it sends its AI gateway with a Cloud Connector key
(RS256, ``CloudConnector::Keys``) and publishes that key with its others through OIDC discovery
(../shared/duo-protocol.md 4.1-4.2). Each API process keeps the keys in memory:

- fetched on first use, and again once they are older than ``max_age`` (a key GitLab dropped
  stops verifying within that; GitLab's own AI gateway keeps them 24 h), keeping the old ones
  if the fetch fails;
- a token whose ``kid`` names no key is tried against every key (GitLab's JWKS ``kid`` and the
  token's are both RFC 7638 thumbprints, but made by two libraries), and if none verifies it the
  keys are fetched again, in case GitLab rotated them;
- whatever asks, a fetch is tried at most once per ``refetch_interval`` in a process, so a flood
  of tokens naming made-up keys costs GitLab two calls (discovery, keys) per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from shared.errors import GitLabUnavailable

log = logging.getLogger("aigw.duo")

ALGORITHM = "RS256"  # what GitLab signs with; a token naming another algorithm is refused unread
DEFAULT_MAX_AGE = 3600.0


@dataclass(frozen=True)
class SigningKey:
    kid: str | None
    key: Any  # a cryptography RSA public key


class BadToken(Exception):
    """The token is refused; ``reason`` says why, for the access record (never the token)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InstanceKeys:
    def __init__(self, fetch: Callable[[], list[dict]], *, refetch_interval: float,
                 max_age: float = DEFAULT_MAX_AGE, clock: Callable[[], float] = time.monotonic):
        """``fetch`` returns the JWKS's keys (``api.gitlab.GitLabClient.oidc_keys``) or raises
        ``GitLabUnavailable``."""
        self._fetch = fetch
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self._clock = clock
        self._keys: tuple[SigningKey, ...] = ()
        self._fetched_at: float | None = None  # when the keys in hand were fetched
        self._tried_at: float | None = None  # when a fetch was last tried, whatever came of it
        self._lock = threading.Lock()

    def decode(self, token: str, *, audience: str, leeway: float) -> dict:
        """The token's claims once its signature, ``aud``, ``exp`` and ``nbf`` hold; ``BadToken``
        otherwise; ``GitLabUnavailable`` if no key was ever fetched and none can be now."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise BadToken("not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise BadToken(f"alg is not {ALGORITHM}")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        keys = self._current()
        named = [key for key in keys if kid is not None and key.kid == kid]
        if named:
            try:
                return _decode(token, named, audience, leeway)
            except _NoKeyVerifies:
                raise BadToken("its key does not verify its signature") from None  # nothing to refetch for
        try:
            return _decode(token, keys, audience, leeway)
        except _NoKeyVerifies:
            pass
        self._refetch(wait=True)  # or another thread just did, while this one waited
        if self._keys is not keys:
            try:
                return _decode(token, self._keys, audience, leeway)
            except _NoKeyVerifies:
                pass
        raise BadToken("no key verifies its signature")

    def _current(self) -> tuple[SigningKey, ...]:
        if not self._keys:
            self._refetch(wait=True)
            if not self._keys:
                raise GitLabUnavailable("The gateway cannot fetch GitLab's signing keys (GITLAB_URL's "
                                        "/.well-known/openid-configuration) to check the instance token.",
                                        retry_after=self.refetch_interval)
        elif self._clock() - self._fetched_at > self.max_age:
            self._refetch(wait=False)  # old keys serve meanwhile, and after a failed fetch
        return self._keys

    def _refetch(self, *, wait: bool) -> bool:
        """Fetch the keys unless a fetch was tried within ``refetch_interval``; True if new keys
        came. Concurrent callers wait for the one fetch in progress (``wait``) and then find it
        recent, or go on with the keys in hand."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            now = self._clock()
            if self._tried_at is not None and now - self._tried_at < self.refetch_interval:
                return False
            self._tried_at = now
            try:
                keys = _signing_keys(self._fetch())
            except GitLabUnavailable as exc:
                log.warning("GitLab's signing keys could not be fetched", extra={"error": exc.message})
                return False
            if not keys:
                log.warning("GitLab's JWKS holds no RS256 signing key")
                return False
            added = {key.kid for key in keys} - {key.kid for key in self._keys}
            self._fetched_at = now  # first: a reader that sees keys finds their time set
            self._keys = keys
            log.info("GitLab's signing keys fetched", extra={"keys": len(keys), "new_kids": sorted(map(str, added))})
            return True
        finally:
            self._lock.release()


class _NoKeyVerifies(Exception):
    pass


def _decode(token: str, keys, audience: str, leeway: float) -> dict:
    """The claims by the first key whose signature holds; ``_NoKeyVerifies`` if none does;
    ``BadToken`` if the signature holds but a claim does not (no other key can change that)."""
    for key in keys:
        try:
            return jwt.decode(token, key.key, algorithms=[ALGORITHM], audience=audience, leeway=leeway,
                              options={"require": ["exp", "sub"]})
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise BadToken(_reason(exc)) from None
    raise _NoKeyVerifies()


def _reason(exc: jwt.PyJWTError) -> str:
    """PyJWT's own words ("Signature has expired", "Audience doesn't match"...): they never
    quote the token."""
    return str(exc)[:200] or type(exc).__name__


def _signing_keys(jwks: list[dict]) -> tuple[SigningKey, ...]:
    """The RSA signature keys among a JWKS's; the others (and any malformed one) are left out."""
    found = []
    for entry in jwks:
        if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig" or entry.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=ALGORITHM).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            log.warning("a key in GitLab's JWKS is not usable", extra={"kid": str(entry.get("kid"))[:100]})
            continue
        kid = entry.get("kid")
        found.append(SigningKey(kid if isinstance(kid, str) else None, key))
    return tuple(found)
