"""GitLab stand-in: the few GitLab REST API v4 endpoints the gateway uses, over a FIXED demo dataset.

`make run` uses it when no GITLAB_URL is set and the integration tests use it as GitLab. It is NOT
a GitLab: users, groups, projects, memberships and tokens are the constants in ``sandbox.gitlab_data``,
answered with GitLab's documented JSON shapes. Tests steer it through `/_gitlab/...` (no auth, never
faulted; ``sandbox.gitlab_controls``):

    POST /_gitlab/fault {"status": 503, "times": 2, "retry_after": 1, "delay_ms": 50, "close": false,
                         "paths": ["/api/v4/user"]}          DELETE /_gitlab/fault      GET /_gitlab/fault
    GET /_gitlab/calls      POST /_gitlab/users/<id>/state {"state": "blocked"}      POST /_gitlab/reset
    POST /_gitlab/tokens/revoke {"token": "glpat-..."}
    POST /_gitlab/oidc/rotate      POST /_gitlab/oidc/token {"claims": {...}}      (sandbox.gitlab_oidc)

GitLab's OIDC discovery and keys (``/.well-known/openid-configuration``, ``/oauth/discovery/keys``) are
published too, with a token of the instance ``sandbox.gitlab_oidc.INSTANCE_ID`` minted on request, as
GitLab Duo Self-Hosted sends its AI gateway (``api.duo_auth``).

What GitLab does and the stand-in does too (each cited where it is modelled): a blocked user's token gets
403 "Your account has been blocked." from every endpoint, /user and /job included; a token without a scope
the endpoint accepts gets 403 insufficient_scope; a revoked token gets 401; GET /projects is the list.

Run: python -m sandbox.gitlab [--host 127.0.0.1] [--port 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from sandbox import serving
from sandbox.gitlab_controls import ControlEndpoints, ControlledServer, token_digest
from sandbox.gitlab_data import (
    ADMIN_TOKEN,
    ALICE_JOB_TOKEN,
    BLOCKED_JOB_TOKEN,
    BLOCKED_TOKEN,
    BOB_TOKEN,
    CAROL_JOB_TOKEN,
    CAROL_TOKEN,
    CREATED_AT,
    DAVE_TOKEN,
    DEMO_OAUTH_TOKEN,
    DEMO_TOKEN,
    ERIN_JOB_TOKEN,
    ERIN_TOKEN,
    GROUPS,
    JOB_TOKENS,
    PROJECT_BOT_TOKEN,
    PROJECTS,
    REPO_ONLY_TOKEN,
    TOKEN_SCOPES,
    TOKENS,
    USERS,
    can_see_group,
    can_see_project,
    find_by_ref,
    group_json,
    missing_scopes,
    project_json,
    project_level,
    visible_projects,
)
from sandbox.gitlab_oidc import DISCOVERY_PATH, JWKS_CACHE_CONTROL, JWKS_PATH, OIDCKeys, discovery

# The public API; the demo tokens are defined in sandbox.gitlab_data and re-exported for the code that logs in.
__all__ = [
    "ADMIN_TOKEN", "ALICE_JOB_TOKEN", "BLOCKED_JOB_TOKEN", "BLOCKED_TOKEN", "BOB_TOKEN", "CAROL_JOB_TOKEN",
    "CAROL_TOKEN", "DAVE_TOKEN", "DEMO_OAUTH_TOKEN", "DEMO_TOKEN", "ERIN_JOB_TOKEN", "ERIN_TOKEN", "LABEL",
    "MAX_BODY", "PROJECT_BOT_TOKEN", "REPO_ONLY_TOKEN", "VERSION", "GitLabHandler", "GitLabServer", "demo_lines",
    "main", "make_server", "serve_in_thread",
]

LABEL = "GITLAB STAND-IN: fixed demo users, groups and projects; not a real GitLab"
VERSION = {"version": "17.5.0-standin", "revision": "standin"}
MAX_BODY = 1024 * 1024

USER_RE = re.compile(r"/api/v4/users/(?P<id>[^/]+)/?")
PROJECT_RE = re.compile(r"/api/v4/projects/(?P<id>.+?)(?:/members/all/(?P<uid>[^/]+))?/?")
# GitLab's API guard refuses a user who may not use the API with this, on every endpoint, before the endpoint
# runs: `forbidden!(api_access_denied_message(user))` in lib/api/api_guard.rb (find_current_user!), the text
# from Gitlab::Auth::UserAccessDeniedReason#rejection_message (lib/gitlab/auth/user_access_denied_reason.rb).
BLOCKED_MESSAGE = "403 Forbidden - Your account has been blocked."
# Gitlab::Auth::InsufficientScopeError, answered by rack-oauth2's Bearer::Forbidden (lib/api/api_guard.rb,
# oauth2_bearer_token_error_handler): {"error", "error_description", "scope": the accepted scopes joined by
# spaces}, with the library's default description (Rack::OAuth2::Server::Resource::ErrorMethods).
INSUFFICIENT_SCOPE = "The request requires higher privileges than provided by the access token."
# Gitlab::Auth::RevokedError: rack-oauth2's Bearer::Unauthorized with error invalid_token (same handler).
REVOKED = "Token was revoked. You have to re-authorize from the user."


# --- HTTP server ------------------------------------------------------------------------------

class GitLabServer(ControlledServer):
    """The stand-in: GitLabHandler answers the API and, through ControlEndpoints, the test controls."""

    def __init__(self, address):
        super().__init__(address, GitLabHandler)
        self.oidc = OIDCKeys()

    def reset(self) -> None:
        super().reset()
        self.oidc.reset()


class GitLabHandler(ControlEndpoints, serving.JSONHandler):
    server: GitLabServer

    def _dispatch(self) -> None:
        method, path = self.command, urlsplit(self.path).path
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.close_connection = True  # we cannot frame the next request; clients send lengths
                return self._message(411, "411 Length Required")
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self.close_connection = True
                return self._message(413, "413 Request Entity Too Large")
            raw = self.rfile.read(length) if length else b""
            if path.startswith("/_gitlab/oidc/"):
                return self._oidc_control(method, path, raw)
            if path.startswith("/_gitlab/"):
                return self._control(method, path, raw)
            if path in (DISCOVERY_PATH, JWKS_PATH):
                return self._oidc_public(method, path)
            if path.startswith("/api/"):
                return self._api(method, path)
            return self._message(404, "404 Not Found")
        except OSError:  # the client went away while we were answering
            self.close_connection = True
        except Exception as exc:  # a stand-in bug: answer 500 rather than drop the connection
            self._message(500, f"500 stand-in internal error: {exc!r}")

    do_GET = do_POST = do_PUT = do_DELETE = _dispatch

    # --- GitLab API ---

    def _credentials(self, path: str) -> tuple[str | None, str | None]:
        authorization = self.headers.get("Authorization", "")
        bearer = authorization[7:].strip() if authorization[:7].lower() == "bearer " else None
        found = [("private", self.headers.get("PRIVATE-TOKEN")), ("bearer", bearer),
                 ("job", self.headers.get("JOB-TOKEN"))]
        if path == "/api/v4/job":
            found.insert(0, found.pop())
        return next(((kind, token) for kind, token in found if token), (None, None))

    def _api(self, method: str, path: str) -> None:
        kind, token = self._credentials(path)
        with self.server.lock:
            self.server.calls.append({"method": method, "path": path, "auth": kind,
                                      "token_sha256": token_digest(token), "time": time.time()})
        fault = self.server.take_fault(path)
        if fault:
            if fault["delay_ms"]:
                time.sleep(fault["delay_ms"] / 1000)
            if fault["close"]:
                self.close_connection = True  # returning without a byte makes the client see a reset/EOF
                return None
            if fault["status"] is not None:
                status = fault["status"]
                try:
                    phrase = HTTPStatus(status).phrase
                except ValueError:
                    phrase = "Error"
                extra = {"Retry-After": f"{fault['retry_after']:g}"} if fault["retry_after"] is not None else None
                return self._message(status, f"{status} {phrase}", extra)
        route = self._route(path)
        if route is None:
            return self._message(404, "404 Not Found")
        if method != "GET":
            return self._message(405, "405 Method Not Allowed")
        if route[0] == "job":
            return self._job(kind, token)
        if kind == "job" or token not in TOKENS:
            return self._message(401, "401 Unauthorized")
        # GitLab's order: the token is validated (revoked, scopes) while it is found, then the API guard
        # checks its user may use the API at all, then the endpoint runs (lib/api/api_guard.rb).
        if self.server.is_revoked(token):
            return self._revoked()
        accepted = missing_scopes(route[0], token)
        if accepted is not None:
            return self._send_json(403, {"error": "insufficient_scope", "error_description": INSUFFICIENT_SCOPE,
                                         "scope": " ".join(accepted)})
        user_id = TOKENS[token][0]
        if self.server.user_state(user_id) == "blocked":
            return self._message(403, BLOCKED_MESSAGE)
        return getattr(self, "_" + route[0])(user_id, token, *route[1:])

    @staticmethod
    def _route(path: str) -> tuple | None:
        simple = {"/api/v4/user": "user", "/api/v4/personal_access_tokens/self": "token_self",
                  "/api/v4/job": "job", "/api/v4/version": "version",
                  # GET /projects, with or without the slash: the list (requests turns /projects/. into it)
                  "/api/v4/projects": "projects", "/api/v4/projects/": "projects"}
        if path in simple:
            return (simple[path],)
        if user := USER_RE.fullmatch(path):
            return ("user_by_id", user["id"])
        if project := PROJECT_RE.fullmatch(path):
            return ("project", unquote(project["id"]), project["uid"])
        prefix = "/api/v4/groups/"
        if path.startswith(prefix) and path[len(prefix):].strip("/"):
            return ("group", unquote(path[len(prefix):].strip("/")))
        return None

    def _user_json(self, user_id: int, full: bool = False) -> dict:
        username, name, admin, bot, _ = USERS[user_id]
        user = {"id": user_id, "username": username, "name": name, "state": self.server.user_state(user_id)}
        if full:
            user.update({"locked": False, "avatar_url": None, "web_url": f"{self.server.base_url}/{username}",
                         "created_at": CREATED_AT, "bot": bot})
        return user

    def _user(self, user_id: int, token: str) -> None:
        user = self._user_json(user_id, full=True)
        if USERS[user_id][2]:
            user["is_admin"] = True  # GitLab shows the flag to admins only
        self._send_json(200, user)

    def _user_by_id(self, user_id: int, token: str, wanted: str) -> None:
        # GET /users/:id (lib/api/users.rb): 404 "404 User Not Found" for an id that names no user.
        if not wanted.isdigit() or int(wanted) not in USERS:
            return self._message(404, "404 User Not Found")
        self._send_json(200, self._user_json(int(wanted), full=True))

    def _token_self(self, user_id: int, token: str) -> None:
        _, kind, token_id, name = TOKENS[token]
        if kind == "oauth":
            return self._message(400, "400 Bad request - This endpoint requires token type to be a personal "
                                      "access token")
        self._send_json(200, {"id": token_id, "name": name, "revoked": False, "created_at": CREATED_AT,
                              "scopes": list(TOKEN_SCOPES.get(token, ("api",))), "user_id": user_id,
                              "active": True, "expires_at": None})

    def _projects(self, user_id: int, token: str) -> None:
        self._send_json(200, [project_json(project_id) for project_id in visible_projects(user_id)])

    def _revoked(self) -> None:
        # rack-oauth2's Resource::Bearer::Unauthorized#finish: the JSON body and a WWW-Authenticate challenge.
        challenge = f'Bearer realm="Protected by OAuth 2.0", error="invalid_token", error_description="{REVOKED}"'
        self._send_json(401, {"error": "invalid_token", "error_description": REVOKED},
                        {"WWW-Authenticate": challenge})

    def _job(self, kind: str | None, token: str | None) -> None:
        if kind != "job" or token not in JOB_TOKENS or self.server.is_revoked(token):
            # A finished (or unknown) job's token: find_valid_running_job_by_token! fails, answered 401.
            return self._message(401, "401 Unauthorized")
        job_id, user_id, project_id = JOB_TOKENS[token]
        if self.server.user_state(user_id) == "blocked":
            return self._message(403, BLOCKED_MESSAGE)
        sha = hashlib.sha1(f"standin-{job_id}".encode()).hexdigest()
        self._send_json(200, {
            "id": job_id, "status": "running", "stage": "test", "name": "ai-job", "ref": "main",
            "user": self._user_json(user_id),
            "pipeline": {"id": job_id - 4000, "project_id": project_id, "ref": "main", "sha": sha,
                         "status": "running"},
        })

    def _version(self, user_id: int, token: str) -> None:
        self._send_json(200, dict(VERSION))

    def _project(self, user_id: int, token: str, ref: str, member: str | None) -> None:
        project_id = find_by_ref(ref, PROJECTS)
        if project_id is None or not can_see_project(project_id, user_id):
            return self._message(404, "404 Project Not Found")
        if member is None:
            return self._send_json(200, project_json(project_id))
        if not member.isdigit():
            return self._message(404, "404 Not Found")
        member_id = int(member)
        level = project_level(project_id, member_id) if member_id in USERS else None
        if level is None:
            return self._message(404, "404 Not found")
        return self._send_json(200, {**self._user_json(member_id), "access_level": level})

    def _group(self, user_id: int, token: str, ref: str) -> None:
        group_id = find_by_ref(ref, GROUPS)
        if group_id is None or not can_see_group(group_id, user_id):
            return self._message(404, "404 Group Not Found")
        self._send_json(200, group_json(group_id))

    # --- OIDC (sandbox.gitlab_oidc) ---

    def _oidc_public(self, method: str, path: str) -> None:
        with self.server.lock:
            self.server.calls.append({"method": method, "path": path, "auth": None, "token_sha256": None,
                                      "time": time.time()})
        fault = self.server.take_fault(path)  # only a fault whose paths name these reaches them
        if fault and fault["delay_ms"]:
            time.sleep(fault["delay_ms"] / 1000)
        if fault and fault["close"]:
            self.close_connection = True
            return None
        if fault and fault["status"] is not None:
            return self._message(fault["status"], f"{fault['status']} Error")
        if method != "GET":
            return self._message(405, "405 Method Not Allowed")
        if path == DISCOVERY_PATH:
            return self._send_json(200, discovery(self.server.base_url))
        return self._send_json(200, self.server.oidc.jwks(), {"Cache-Control": JWKS_CACHE_CONTROL})

    def _oidc_control(self, method: str, path: str, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._message(400, "400 Bad request - the body is not JSON")
        if method == "POST" and path == "/_gitlab/oidc/rotate":
            return self._send_json(200, {"key": self.server.oidc.rotate(bool((body or {}).get("drop_old")))})
        if method == "POST" and path == "/_gitlab/oidc/token":
            try:
                return self._send_json(200, {"token": self.server.oidc.token(self.server.base_url, body)})
            except (ValueError, TypeError) as exc:
                return self._message(400, f"400 Bad request - {exc}")
        return self._message(404, "404 Not Found")

    # --- responses ---

    def _message(self, status: int, message: str, headers=None) -> None:
        self._send_json(status, {"message": message}, headers)


# --- entry points -----------------------------------------------------------------------------

def make_server(host: str = "127.0.0.1", port: int = 0) -> GitLabServer:
    return GitLabServer((host, port))


def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> tuple[GitLabServer, str]:
    """Start a server on a daemon thread; stop it with `server.stop()`."""
    return serving.serve_in_thread(make_server(host, port), "gitlab-standin")


def demo_lines() -> list[str]:
    return [
        LABEL,
        f"  gateway GITLAB_API_TOKEN (root, admin): {ADMIN_TOKEN}",
        f"  demo user alice: {DEMO_TOKEN} (personal), {DEMO_OAUTH_TOKEN} (OAuth), CI job token {ALICE_JOB_TOKEN}",
        f"  others: bob {BOB_TOKEN}, dave {DAVE_TOKEN}, erin {ERIN_TOKEN}, carol (blocked) {CAROL_TOKEN}, "
        f"project 100 bot {PROJECT_BOT_TOKEN}, alice with scope read_repository only {REPO_ONLY_TOKEN}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.gitlab", description=LABEL)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port)
    return serving.serve_until_signalled(server, "\n".join(demo_lines()), "gitlab stand-in")


if __name__ == "__main__":
    raise SystemExit(main())
