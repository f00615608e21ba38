"""GitLab stand-in: the few GitLab REST API v4 endpoints the gateway uses, over a FIXED demo dataset.

`make run` uses it when no GITLAB_URL is set and the integration tests use it as GitLab. It is NOT
a GitLab: users, groups, projects, memberships and tokens are the constants below, answered with
GitLab's documented JSON shapes. Tests steer it through `/_gitlab/...` (no auth, never faulted):

    POST /_gitlab/fault {"status": 503, "times": 2, "retry_after": 1, "delay_ms": 50, "close": false,
                         "paths": ["/api/v4/user"]}          DELETE /_gitlab/fault      GET /_gitlab/fault
    GET /_gitlab/calls      POST /_gitlab/users/<id>/state {"state": "blocked"}      POST /_gitlab/reset

Run: python -m sandbox.gitlab [--host 127.0.0.1] [--port 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import deque
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

from sandbox import serving

LABEL = "GITLAB STAND-IN: fixed demo users, groups and projects; not a real GitLab"
VERSION = {"version": "17.5.0-standin", "revision": "standin"}
CALL_LOG_SIZE = 1000
MAX_BODY = 1024 * 1024
CREATED_AT = "2024-01-01T00:00:00.000Z"

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50

ADMIN_TOKEN = "glpat-root-admin-token"  # root, admin: the gateway's own GITLAB_API_TOKEN in demos and tests
DEMO_TOKEN = "glpat-alice-demo-token"  # alice, the demo user (personal access token)
DEMO_OAUTH_TOKEN = "gloas-alice-oauth-token"  # alice (OAuth token)
BOB_TOKEN = "glpat-bob-token"
BLOCKED_TOKEN = CAROL_TOKEN = "glpat-carol-blocked-token"
DAVE_TOKEN = "glpat-dave-token"
ERIN_TOKEN = "glpat-erin-token"
PROJECT_BOT_TOKEN = "glpat-project-100-bot-token"  # project access token of bot user 7 (Maintainer of 100)
ALICE_JOB_TOKEN = "glcbt-alice-job-100"
ERIN_JOB_TOKEN = "glcbt-erin-job-101"
BLOCKED_JOB_TOKEN = CAROL_JOB_TOKEN = "glcbt-carol-job-100"

# id -> (username, name, admin, bot, state)
USERS = {
    1: ("root", "Administrator", True, False, "active"),
    2: ("alice", "Alice Demo", False, False, "active"),
    3: ("bob", "Bob", False, False, "active"),
    4: ("carol", "Carol", False, False, "blocked"),
    5: ("dave", "Dave", False, False, "active"),
    6: ("erin", "Erin", False, False, "active"),
    7: ("project_100_bot", "project_100_bot", False, True, "active"),
}
# token -> (user id, kind, personal access token id or None, token name)
TOKENS = {
    ADMIN_TOKEN: (1, "personal", 1, "gateway"),
    DEMO_TOKEN: (2, "personal", 2, "alice-demo"),
    DEMO_OAUTH_TOKEN: (2, "oauth", None, "alice-oauth"),
    BOB_TOKEN: (3, "personal", 3, "bob"),
    CAROL_TOKEN: (4, "personal", 4, "carol"),
    DAVE_TOKEN: (5, "personal", 5, "dave"),
    ERIN_TOKEN: (6, "personal", 6, "erin"),
    PROJECT_BOT_TOKEN: (7, "project", 7, "project_100_bot"),
}
# job token -> (job id, user id, project id)
JOB_TOKENS = {ALICE_JOB_TOKEN: (9001, 2, 100), ERIN_JOB_TOKEN: (9002, 6, 101), CAROL_JOB_TOKEN: (9003, 4, 100)}
# id -> (full path, parent id)
GROUPS = {10: ("acme", None), 11: ("acme/platform", 10), 12: ("acme/platform/ml", 11), 20: ("other", None)}
USER_NAMESPACES = {50: {"id": 50, "name": "alice", "path": "alice", "kind": "user", "full_path": "alice",
                        "parent_id": None}}
# id -> (full path, namespace id, visibility)
PROJECTS = {
    100: ("acme/platform/api", 11, "private"),
    101: ("acme/platform/ml/models", 12, "private"),
    102: ("acme/handbook", 10, "public"),
    200: ("other/secret", 20, "private"),
    300: ("alice/scratch", 50, "private"),
}
GROUP_MEMBERS = {10: {2: DEVELOPER}, 20: {5: MAINTAINER}}  # group id -> {user id: access level}
PROJECT_MEMBERS = {100: {3: REPORTER, 4: DEVELOPER, 7: MAINTAINER}, 101: {6: DEVELOPER}, 300: {2: OWNER}}

PROJECT_RE = re.compile(r"/api/v4/projects/(?P<id>.+?)(?:/members/all/(?P<uid>[^/]+))?/?")
STATE_RE = re.compile(r"/_gitlab/users/(?P<uid>[^/]+)/state")


# --- pure dataset logic -----------------------------------------------------------------------

def token_digest(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else None


def group_chain(group_id: int | None) -> list[int]:
    """The group and its ancestors, nearest first; [] for a user namespace."""
    chain = []
    while group_id in GROUPS:
        chain.append(group_id)
        group_id = GROUPS[group_id][1]
    return chain


def group_level(group_id: int, user_id: int) -> int | None:
    levels = [GROUP_MEMBERS.get(g, {}).get(user_id) for g in group_chain(group_id)]
    return max((lv for lv in levels if lv), default=None)


def project_level(project_id: int, user_id: int) -> int | None:
    """Effective access level: the highest of the direct and the inherited (ancestor group) memberships."""
    direct = PROJECT_MEMBERS.get(project_id, {}).get(user_id)
    inherited = group_level(PROJECTS[project_id][1], user_id)  # None for a user namespace
    return max((lv for lv in (direct, inherited) if lv), default=None)


def can_see_project(project_id: int, user_id: int) -> bool:
    return USERS[user_id][2] or PROJECTS[project_id][2] == "public" or project_level(project_id, user_id) is not None


def can_see_group(group_id: int, user_id: int) -> bool:
    """Admins, members of the group (direct or inherited), and members of anything below it."""
    if USERS[user_id][2] or group_level(group_id, user_id) is not None:
        return True
    if any(group_id in group_chain(g) and user_id in members for g, members in GROUP_MEMBERS.items()):
        return True
    return any(group_id in group_chain(PROJECTS[p][1]) and user_id in members for p, members in PROJECT_MEMBERS.items())


def find_by_ref(ref: str, table: dict) -> int | None:
    """Resolve a numeric id or a (URL-decoded) full path, case-insensitively like GitLab."""
    if ref.isdigit():
        return int(ref) if int(ref) in table else None
    return next((key for key, row in table.items() if row[0].lower() == ref.lower()), None)


def namespace_json(namespace_id: int) -> dict:
    if namespace_id in USER_NAMESPACES:
        return dict(USER_NAMESPACES[namespace_id])
    full_path, parent = GROUPS[namespace_id]
    name = full_path.rsplit("/", 1)[-1]
    return {"id": namespace_id, "name": name, "path": name, "kind": "group", "full_path": full_path,
            "parent_id": parent}


def project_json(project_id: int) -> dict:
    full_path, namespace_id, visibility = PROJECTS[project_id]
    name = full_path.rsplit("/", 1)[-1]
    return {"id": project_id, "name": name, "path": name, "path_with_namespace": full_path,
            "visibility": visibility, "namespace": namespace_json(namespace_id)}


def group_json(group_id: int) -> dict:
    full_path, parent = GROUPS[group_id]
    name = full_path.rsplit("/", 1)[-1]
    return {"id": group_id, "name": name, "path": name, "full_path": full_path, "parent_id": parent,
            "visibility": "private"}


def parse_fault(body) -> dict:
    """Validate a POST /_gitlab/fault body; raise ValueError on anything unexpected."""
    if not isinstance(body, dict):
        raise ValueError("fault must be a JSON object")
    unknown = set(body) - {"status", "times", "retry_after", "delay_ms", "close", "paths"}
    if unknown:
        raise ValueError(f"unknown fault keys: {sorted(unknown)}")

    def number(key, low, high=float("inf"), kinds=(int,)):
        value = body.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high):
            raise ValueError(f"'{key}' must be a number from {low} to {high}")
        return value

    fault = {"status": number("status", 400, 599), "times": number("times", 1), "delay_ms": number("delay_ms", 0),
             "retry_after": number("retry_after", 0, kinds=(int, float)), "close": body.get("close", False),
             "paths": body.get("paths")}
    if not isinstance(fault["close"], bool):
        raise ValueError("'close' must be a boolean")
    paths = fault["paths"]
    if paths is not None and not (isinstance(paths, list) and all(isinstance(p, str) and p for p in paths)):
        raise ValueError("'paths' must be a list of path prefixes")
    if fault["status"] is None and not fault["close"] and not fault["delay_ms"]:
        raise ValueError("a fault needs 'status', 'close' or 'delay_ms'")
    return fault


# --- HTTP server ------------------------------------------------------------------------------

class GitLabServer(serving.StandinServer):

    def __init__(self, address):
        super().__init__(address, GitLabHandler)
        self.lock = threading.Lock()
        self.calls: deque = deque(maxlen=CALL_LOG_SIZE)
        self.fault: dict | None = None
        self.states: dict[int, str] = {}  # run-time user state changes

    def user_state(self, user_id: int) -> str:
        with self.lock:
            return self.states.get(user_id, USERS[user_id][4])

    def take_fault(self, path: str) -> dict | None:
        """The fault that applies to this API call, if any (consuming one of its `times`)."""
        with self.lock:
            fault = self.fault
            if fault is None or not any(path.startswith(p) for p in fault["paths"] or ["/api/v4"]):
                return None
            if fault["times"] is not None:
                fault["times"] -= 1
                if fault["times"] <= 0:
                    self.fault = None
            return dict(fault)

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.fault = None
            self.states.clear()


class GitLabHandler(serving.JSONHandler):
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
            if path.startswith("/_gitlab/"):
                return self._control(method, path, raw)
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
        user_id = TOKENS[token][0]
        if route[0] != "user" and self.server.user_state(user_id) == "blocked":
            return self._message(403, "403 Forbidden")  # /user still answers, so callers can tell why
        return getattr(self, "_" + route[0])(user_id, token, *route[1:])

    @staticmethod
    def _route(path: str) -> tuple | None:
        simple = {"/api/v4/user": "user", "/api/v4/personal_access_tokens/self": "token_self",
                  "/api/v4/job": "job", "/api/v4/version": "version"}
        if path in simple:
            return (simple[path],)
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

    def _token_self(self, user_id: int, token: str) -> None:
        _, kind, token_id, name = TOKENS[token]
        if kind == "oauth":
            return self._message(400, "400 Bad request - This endpoint requires token type to be a personal "
                                      "access token")
        self._send_json(200, {"id": token_id, "name": name, "revoked": False, "created_at": CREATED_AT,
                              "scopes": ["api"], "user_id": user_id, "active": True, "expires_at": None})

    def _job(self, kind: str | None, token: str | None) -> None:
        if kind != "job" or token not in JOB_TOKENS:
            return self._message(401, "401 Unauthorized")
        job_id, user_id, project_id = JOB_TOKENS[token]
        if self.server.user_state(user_id) == "blocked":
            return self._message(403, "403 Forbidden")
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

    # --- test controls ---

    def _control(self, method: str, path: str, raw: bytes) -> None:
        server, state_path = self.server, STATE_RE.fullmatch(path)
        if path == "/_gitlab/calls" and method == "GET":
            with server.lock:
                calls = [dict(call) for call in server.calls]
            return self._send_json(200, {"calls": calls})
        if path == "/_gitlab/reset" and method == "POST":
            server.reset()
            return self._send_json(200, {"ok": True})
        if path == "/_gitlab/fault" and method in ("GET", "POST", "DELETE"):
            fault = None
            if method == "POST":
                try:
                    fault = parse_fault(json.loads(raw or b"null"))
                except ValueError as exc:  # JSONDecodeError is a ValueError too
                    return self._message(400, f"400 Bad request - {exc}")
            with server.lock:
                if method != "GET":
                    server.fault = fault
                current = dict(server.fault) if server.fault else None
            return self._send_json(200, {"fault": current})
        if state_path and method == "POST":
            uid = state_path["uid"]
            if not uid.isdigit() or int(uid) not in USERS:
                return self._message(404, "404 User Not Found")
            try:
                state = json.loads(raw or b"null")["state"]
            except (ValueError, TypeError, KeyError):
                state = None
            if state not in ("active", "blocked"):
                return self._message(400, "400 Bad request - state must be 'active' or 'blocked'")
            with server.lock:
                server.states[int(uid)] = state
            return self._send_json(200, {"id": int(uid), "state": state})
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
        f"project 100 bot {PROJECT_BOT_TOKEN}",
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
