"""A small client for the GitLab REST API v4 calls the gateway makes.

Two kinds of call: with the *caller's* credential (who are you: ``/user``,
``/job``), and with the *gateway's own* token (``GITLAB_API_TOKEN``: projects,
groups, memberships). Every call has ``gitlab.timeout``; TLS verification stays
on (``gitlab.ca_file`` serves a self-signed CA). Failures split in two, because
they must look different to callers: GitLab refusing a credential
(``CredentialRejected``: the caller gets 401, or 403 if GitLab says the user may not use
the API at all) versus GitLab not answering
usefully (``GitLabUnavailable``: unreachable, 5xx, 429; the caller gets 503).

The instance's OIDC signing keys (``oidc_keys``: discovery, then its ``jwks_uri``) are public
and fetched without any token: GitLab Duo's instance JWT is checked against them (``api.duo_keys``).

Every lookup made for a request is counted against ``gitlab.max_calls_per_second``
(``api.gitlab_budget``); one over it waits at most a second, then is refused as
``GitLabUnavailable`` without calling GitLab. A reference to a project or group
reaches this module already checked (``api.project_ref``), and is always one
escaped path segment: never empty, never ``.`` or ``..``.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

import requests

from api.gitlab_budget import CallBudget
from shared import metrics
from shared.config import GitLabConfig
from shared.errors import GitLabUnavailable

log = logging.getLogger("aigw.gitlab")

POOL_SIZE = 32
MAX_MESSAGE = 300  # of GitLab's own refusal text passed on to the caller


class CredentialRejected(Exception):
    """GitLab answered 401/403 to the caller's credential. ``reason`` says which refusal:

    - ``invalid``: 401, unknown, expired or revoked;
    - ``scope``: 403 ``insufficient_scope``; ``detail`` is the scopes GitLab names;
    - ``blocked``: any other 403, which GitLab's API guard gives a user who may not use the
      API at all (blocked, deactivated, pending approval...); ``detail`` is GitLab's message.
    """

    def __init__(self, status: int, reason: str = "invalid", detail: str = ""):
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.detail = detail


class GitLabClient:
    def __init__(self, base_url: str, api_token: str | None, config: GitLabConfig):
        self.base_url = base_url.rstrip("/")
        self.api = f"{self.base_url}/api/v4"
        self.api_token = api_token
        self.timeout = config.timeout
        self.session = requests.Session()
        self.session.verify = config.ca_file or config.verify_tls
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.budget = CallBudget(config.max_calls_per_second)

    # -- the caller's credential --------------------------------------------
    def current_user(self, token: str) -> dict:
        # Bearer works for personal, project, group and OAuth tokens alike.
        return self._get("/user", {"Authorization": f"Bearer {token}"}, caller=True)

    def current_job(self, job_token: str) -> dict:
        return self._get("/job", {"JOB-TOKEN": job_token}, caller=True)

    # -- the gateway's own token ---------------------------------------------
    def project(self, ref: str | int) -> dict | None:
        """A project by id or full path; ``None`` if it does not exist or the gateway cannot see it."""
        return self._get(f"/projects/{_segment(ref)}", self._own(), missing_ok=True)

    def member_access_level(self, project_id: int, user_id: int) -> int:
        """The user's effective (inherited included) access level; 0 for a non-member."""
        member = self._get(f"/projects/{_segment(project_id)}/members/all/{_segment(user_id)}", self._own(),
                           missing_ok=True)
        if not member or member.get("state", "active") != "active":
            return 0
        return int(member.get("access_level") or 0)

    def group(self, group_id: int) -> dict | None:
        return self._get(f"/groups/{_segment(group_id)}", self._own(), missing_ok=True)

    def user(self, user_id: int | str) -> dict | None:
        """A user by id (GET /users/:id); ``None`` if there is none."""
        return self._get(f"/users/{_segment(user_id)}", self._own(), missing_ok=True)

    # -- public, no token ------------------------------------------------------
    def oidc_keys(self) -> list[dict]:
        """The JSON Web Keys GitLab publishes: ``/.well-known/openid-configuration`` under
        GITLAB_URL (its path kept, unlike GitLab's AI gateway's ``urljoin``), then the ``jwks_uri``
        it names (GitLab: ``/oauth/discovery/keys``, holding the OIDC, CI and Cloud Connector keys;
        doorkeeper-openid_connect's discovery controller, ee/app/controllers/ee/jwks_controller.rb).
        No token is sent: both are public, and the second URL is GitLab's word, not ours.
        ``GitLabUnavailable`` if either answer is missing or not what GitLab publishes."""
        discovery = self._get(f"{self.base_url}/.well-known/openid-configuration", {}, absolute=True)
        jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise GitLabUnavailable("GitLab's OpenID discovery names no jwks_uri.", retry_after=5)
        jwks = self._get(jwks_uri, {}, absolute=True)
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        if not isinstance(keys, list):
            raise GitLabUnavailable("GitLab's JWKS holds no key list.", retry_after=5)
        return [key for key in keys if isinstance(key, dict)]

    def reachable(self) -> bool:
        """Does GitLab answer at all (for /ready)? Any HTTP answer below 500 counts."""
        try:
            response = self.session.get(f"{self.api}/version", headers=self._own(), timeout=min(self.timeout, 2.0))
        except requests.RequestException:
            return False
        return response.status_code < 500

    def gateway_user(self) -> dict:
        """Who the gateway's own token belongs to (checked at start, outside the call budget)."""
        return self._get("/user", self._own(), caller=True, budgeted=False)

    def _own(self) -> dict:
        return {"PRIVATE-TOKEN": self.api_token or ""}

    # -- plumbing --------------------------------------------------------------
    def _get(self, path: str, headers: dict, *, caller: bool = False, missing_ok: bool = False,
             budgeted: bool = True, absolute: bool = False):
        if budgeted and not self.budget.take():
            metrics.GITLAB_REQUESTS.labels("throttled").inc()
            log.warning("gitlab call refused: over gitlab.max_calls_per_second", extra={"path": _route(path)})
            raise GitLabUnavailable("The gateway is making as many GitLab lookups as it may "
                                    "(gitlab.max_calls_per_second); retry shortly.", retry_after=1)
        started = time.monotonic()
        try:
            response = self.session.get(path if absolute else self.api + path, headers=headers,
                                        timeout=self.timeout)
        except requests.exceptions.SSLError as exc:
            metrics.GITLAB_REQUESTS.labels("tls_error").inc()
            log.error("gitlab TLS verification failed", extra={"error": str(exc)[:300]})
            raise GitLabUnavailable("The gateway cannot verify GitLab's TLS certificate.", retry_after=30) from None
        except requests.RequestException as exc:
            metrics.GITLAB_REQUESTS.labels("unreachable").inc()
            log.warning("gitlab unreachable", extra={"path": _route(path), "error": type(exc).__name__})
            raise GitLabUnavailable(retry_after=5) from None
        status = response.status_code
        metrics.GITLAB_REQUESTS.labels(str(status)).inc()
        log.debug("gitlab call", extra={"path": _route(path), "status": status,
                                        "ms": round((time.monotonic() - started) * 1000, 1)})
        if status == 429 or status >= 500:
            raise GitLabUnavailable(retry_after=_retry_after(response) or 5)
        if status in (401, 403) and caller:
            raise _rejection(status, response)
        if status >= 400 and absolute:  # a public document, asked for without any token
            raise GitLabUnavailable(f"GitLab answered HTTP {status} for {_route(path)}.", retry_after=5)
        if status in (401, 403):
            # The gateway's own token was refused: a deployment problem, not the caller's.
            log.error("GitLab refused the gateway's GITLAB_API_TOKEN", extra={"status": status})
            raise GitLabUnavailable("The gateway's own GitLab token was refused; an administrator must fix "
                                    "GITLAB_API_TOKEN.", retry_after=60)
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            raise GitLabUnavailable(f"GitLab answered HTTP {status} to a lookup the gateway needs.", retry_after=5)
        try:
            return response.json()
        except ValueError:
            raise GitLabUnavailable("GitLab answered with something that is not JSON.", retry_after=5) from None


def _rejection(status: int, response: requests.Response) -> CredentialRejected:
    """What GitLab's refusal of a caller's credential means. A 403 is either its OAuth layer's
    ``{"error": "insufficient_scope", "scope": "read_user api read_api", ...}`` (rack-oauth2's
    Bearer::Forbidden, raised for Gitlab::Auth::InsufficientScopeError: lib/api/api_guard.rb) or
    its API guard's ``{"message": "403 Forbidden - <why>"}`` for a user who may not use the API
    (``forbidden!(api_access_denied_message(user))`` in lib/api/api_guard.rb, the reason from
    lib/gitlab/auth/user_access_denied_reason.rb: blocked, deactivated, pending approval...)."""
    if status == 401:
        return CredentialRejected(401)
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    if body.get("error") == "insufficient_scope":
        return CredentialRejected(403, "scope", _printable(body.get("scope")))
    return CredentialRejected(403, "blocked", _printable(body.get("message")) or "403 Forbidden")


def _printable(value) -> str:
    """GitLab's text, fit to pass on: a string, printable, bounded."""
    if not isinstance(value, str):
        return ""
    return "".join(ch for ch in value if ch.isprintable())[:MAX_MESSAGE].strip()


def _segment(ref) -> str:
    """One path segment: an id, or a full path with its slashes escaped as GitLab expects."""
    text = quote(str(ref), safe="")
    if text in ("", ".", ".."):
        # requests would normalise /projects/. to /projects/ (GitLab's project list): never send one.
        raise ValueError(f"not a GitLab reference: {ref!r}")
    return text


def _retry_after(response: requests.Response) -> float | None:
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if 0 < value < 3600 else None


def _route(path: str) -> str:
    """A path fit for logs: ids stay, nothing secret is in these paths anyway."""
    return path.split("?", 1)[0]
