"""Fixed demo dataset of the GitLab stand-in, and the pure queries over it (no I/O, no run-time state).

Users, tokens, groups, projects and memberships are constants; the functions answer who can see what, at
which access level, and render GitLab's JSON shapes. ``sandbox.gitlab`` (the HTTP server) serves them and
re-exports the tokens, which tests, benchmarks and ``make run`` use as credentials.
"""

from __future__ import annotations

CREATED_AT = "2024-01-01T00:00:00.000Z"  # every user and token was created then

GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 10, 20, 30, 40, 50

ADMIN_TOKEN = "glpat-root-admin-token"  # root, admin: the gateway's own GITLAB_API_TOKEN in demos and tests
DEMO_TOKEN = "glpat-alice-demo-token"  # alice, the demo user (personal access token)
DEMO_OAUTH_TOKEN = "gloas-alice-oauth-token"  # alice (OAuth token)
BOB_TOKEN = "glpat-bob-token"
BLOCKED_TOKEN = CAROL_TOKEN = "glpat-carol-blocked-token"
DAVE_TOKEN = "glpat-dave-token"
ERIN_TOKEN = "glpat-erin-token"
PROJECT_BOT_TOKEN = "glpat-project-100-bot-token"  # project access token of bot user 7 (Maintainer of 100)
REPO_ONLY_TOKEN = "glpat-alice-read-repository-token"  # alice, scope read_repository only: no API reads
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
    REPO_ONLY_TOKEN: (2, "personal", 8, "alice-read-repository"),
}
# token -> its scopes, where not just "api"
TOKEN_SCOPES = {REPO_ONLY_TOKEN: ("read_repository",)}
# The scopes an API endpoint accepts, in the order GitLab names them when refusing a token that has none
# of them: the endpoint class's own `allow_access_with_scope` first, then API::API's `api` and (for GET)
# `read_api` (lib/api/api.rb). /user and /version add read_user (lib/api/users.rb, lib/api/version.rb);
# personal_access_tokens/self accepts every scope (lib/api/personal_access_tokens/self_information.rb).
API_SCOPES = ("api", "read_api")
ENDPOINT_SCOPES = {"user": ("read_user", *API_SCOPES), "version": ("read_user", *API_SCOPES), "token_self": None}
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


# --- pure queries and JSON shapes -------------------------------------------------------------

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


def missing_scopes(route: str, token: str) -> tuple[str, ...] | None:
    """The scopes endpoint ``route`` would accept, if ``token`` has none of them; None if it may call it."""
    accepted = ENDPOINT_SCOPES.get(route, API_SCOPES)
    if accepted is None or set(TOKEN_SCOPES.get(token, ("api",))) & set(accepted):
        return None
    return accepted


def visible_projects(user_id: int) -> list[int]:
    """GET /projects for this user: what they can see, newest first (GitLab orders by created_at desc)."""
    return sorted((p for p in PROJECTS if can_see_project(p, user_id)), reverse=True)


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
