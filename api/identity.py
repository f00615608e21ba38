"""Who is calling: the one place a request's identity is established, with GitLab.

Credentials: ``Authorization: Bearer``, ``PRIVATE-TOKEN`` or ``x-api-key`` (a
GitLab personal, project, group or OAuth token), or ``JOB-TOKEN`` (a CI job
token); two different ones in one request are refused. Optional project claim:
``X-Gitlab-Project-Id`` (id or full path, checked by ``api.project_ref`` before
any GitLab call); a job token's project is the job's own.

GitLab answers are cached in Redis keyed by a SHA-256 of the credential
(``api.gitlab_cache``). A credential GitLab refused is remembered for 10 s, per
credential kind, with GitLab's reason, so a flood of bad tokens is not a flood of
GitLab calls; the refusal also deletes the credential's cached identity, so no
outage grace can bring it back. A project the caller may not see and one that
does not exist get the same answer, naming only the reference sent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

from redis import Redis

from api.gitlab import CredentialRejected, GitLabClient
from api.gitlab_cache import GitLabCache, Rejected
from api.project_ref import ProjectRef, project_ref
from shared.config import GitLabConfig
from shared.errors import (
    GatewayError,
    InsufficientAccess,
    MissingCredentials,
    ProjectMismatch,
    ProjectNotFound,
    Unauthorized,
    UserBlocked,
)
from shared.keys import gitlab_cache_key, gitlab_rejected_key

REJECTED_TTL = 10
STRUCTURE_TTL = 300  # projects and groups: renames and moves are rare
MISSING_PROJECT_TTL = 60  # a project created a moment ago should not stay "missing" for long
LEVEL_NAMES = {10: "Guest", 20: "Reporter", 30: "Developer", 40: "Maintainer", 50: "Owner"}
# GET /user takes read_user, read_api or api (lib/api/users.rb and lib/api/api.rb: allow_access_with_scope).
USER_SCOPES = "read_user or api"


@dataclass(frozen=True)
class Identity:
    user_id: str | None = None
    username: str | None = None
    project_id: str | None = None
    project_path: str | None = None
    group_ids: tuple[str, ...] = ()  # the project's group and every ancestor, nearest first
    credential: str | None = None  # "token" | "job" | "duo" (GitLab Duo's instance token, api.duo_auth)
    is_admin: bool = False  # a GitLab administrator (GET /user's is_admin); never for a CI job token
    # Who a per-user rate limit counts when there is no user: a GitLab Duo request whose user is not
    # known (17.x sends no user id) counts as its instance's pseudonymous user (api.duo_auth).
    rate_key: str | None = None
    instance_id: str | None = None  # that request's GitLab instance (its verified token's sub)

    def log_fields(self) -> dict:
        return {"user_id": self.user_id, "username": self.username, "project_id": self.project_id}

    def job_fields(self) -> dict:
        """What a job may carry about its caller: ids for logs, never credentials. A GitLab Duo request
        with no known user names its GitLab instance (the id its verified token names), which the
        breaker counts as one caller (``workers.breaker.caller_of``), not the pseudonymous user id the
        request's own header names."""
        fields = self.log_fields()
        if self.user_id is None and self.instance_id:
            fields["gitlab_instance"] = self.instance_id
        return fields

    @property
    def limit_key(self) -> str | None:
        """Whose allowance a per-user rate limit takes: the user's, else ``rate_key``'s."""
        return self.user_id or self.rate_key

    def describe(self) -> str:
        where = f"project '{self.project_path}' (id {self.project_id})" if self.project_id else "no project"
        if self.username is None:
            return f"a request with no known GitLab user and {where}"
        return f"user '{self.username}' with {where}"


@dataclass(frozen=True)
class Credential:
    kind: str  # "token" | "job"
    secret: str = field(repr=False)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.secret.encode()).hexdigest()


def credential_from(req) -> Credential:
    found = set()
    authorization = (req.get_header("Authorization") or "").strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("Use 'Authorization: Bearer <GitLab token>'.")
        found.add(value.strip())
    for header in ("PRIVATE-TOKEN", "x-api-key"):
        value = (req.get_header(header) or "").strip()
        if value:
            found.add(value)
    job_token = (req.get_header("JOB-TOKEN") or "").strip()
    if len(found | {job_token} - {""}) > 1:
        # Which one would GitLab vouch for? Neither is guessed: a job token must not ride on
        # another credential, nor another credential on a job token.
        raise Unauthorized("The request carries two different credentials; send one.")
    if job_token:
        return Credential("job", job_token)
    if not found:
        raise MissingCredentials()
    return Credential("token", found.pop())


class Authenticator:
    def __init__(self, gitlab: GitLabClient, cache: GitLabCache, redis: Redis, config: GitLabConfig):
        self.gitlab = gitlab
        self.cache = cache
        self.redis = redis
        self.config = config

    def identify(self, req) -> Identity:
        """The caller, or a ``GatewayError`` refusing them. As soon as GitLab has named the user,
        ``req.context.identity`` says who it is, so the access record of a refusal names them."""
        credential = credential_from(req)
        claim = project_ref(req.get_header("X-Gitlab-Project-Id"))  # 400 before any GitLab call
        user, job_project_id = self._who(credential)
        caller = Identity(str(user["id"]), user.get("username"), credential=credential.kind,
                          is_admin=credential.kind == "token" and user.get("is_admin") is True)
        req.context.identity = caller
        if user.get("state") != "active":
            raise UserBlocked(f"The GitLab user '{user.get('username')}' is {user.get('state')}; "
                              "only active users may use the gateway.")
        ref, project = claim, None
        if credential.kind == "job":
            ref = _job_project(job_project_id)
            project = self._project(ref) if ref else None
            if project is None:
                raise ProjectNotFound("The CI job's project is not visible to the gateway.")
            if claim and not _same_project(claim, project):
                raise ProjectMismatch(f"A CI job token may only act for its own project "
                                      f"'{project['path_with_namespace']}', not '{claim.text}'.")
        elif claim:
            project = self._project(claim)
            if project is None:
                raise ProjectNotFound(_not_found(claim))
        if project is None:
            return caller
        self._check_access(project, user, ref)
        return Identity(caller.user_id, caller.username, str(project["id"]), project["path_with_namespace"],
                        self._ancestry(project.get("namespace") or {}), credential.kind, caller.is_admin)

    # -- for callers another way vouches for (GitLab Duo's instance JWT: api.duo_auth) -----------
    def project_access(self, caller: Identity, ref: ProjectRef) -> Identity | None:
        """``caller`` with ``ref`` as its project if the project exists and the caller has
        ``gitlab.min_access_level`` in it, else None (no refusal, and nothing said about which).
        Cached as ``identify``'s lookups are; ``GitLabUnavailable`` if GitLab cannot say."""
        project = self._project(ref)
        if project is None or caller.user_id is None:
            return None
        if self._access_level(project, caller.user_id) < self.config.min_access_level:
            return None
        return replace(caller, project_id=str(project["id"]), project_path=project["path_with_namespace"],
                       group_ids=self._ancestry(project.get("namespace") or {}))

    def username(self, user_id: str) -> str | None:
        """The username of the user with ``user_id`` (the gateway's own token), cached like projects;
        None if GitLab knows no such user."""
        found = self.cache.get(gitlab_cache_key("user", user_id),
                               lambda: _username_only(self.gitlab.user(user_id)), ttl=STRUCTURE_TTL,
                               ttl_if_none=MISSING_PROJECT_TTL)
        return (found or {}).get("username")

    # -- each lookup, cached ---------------------------------------------------
    def _who(self, credential: Credential) -> tuple[dict, int | None]:
        digest = credential.digest
        key = gitlab_cache_key(credential.kind, digest)
        known = self.cache.fresh(key, self.config.cache_ttl)  # the common case: no round trip at all
        if known is not None:
            return known["user"], known.get("project_id")
        rejected_key = gitlab_rejected_key(credential.kind, digest)
        remembered = self.redis.get(rejected_key)
        if remembered is not None:
            raise _refusal(_verdict(remembered))

        def fetch() -> dict:
            try:
                if credential.kind == "job":
                    job = self.gitlab.current_job(credential.secret)
                    return {"user": _user(job.get("user") or {}),
                            "project_id": (job.get("pipeline") or {}).get("project_id")}
                return {"user": _user(self.gitlab.current_user(credential.secret))}
            except CredentialRejected as refused:
                verdict = {"reason": refused.reason, "detail": refused.detail}
                self.redis.set(rejected_key, json.dumps(verdict), ex=REJECTED_TTL)
                raise Rejected(verdict) from None

        try:
            value = self.cache.get(key, fetch, ttl=self.config.cache_ttl)
        except Rejected as rejected:
            raise _refusal(rejected.verdict) from None
        return value["user"], value.get("project_id")

    def _project(self, ref: ProjectRef) -> dict | None:
        def fetch() -> dict | None:
            found = self.gitlab.project(ref.key)
            if not found:
                return None
            namespace = found.get("namespace") or {}
            return {"id": found["id"], "path_with_namespace": found.get("path_with_namespace"),
                    "namespace": {k: namespace.get(k) for k in ("id", "kind", "full_path", "parent_id")}}

        return self.cache.get(gitlab_cache_key("project", ref.key), fetch, ttl=STRUCTURE_TTL,
                              ttl_if_none=MISSING_PROJECT_TTL)

    def _access_level(self, project: dict, user_id) -> int:
        """The user's effective access level in the project; 0 for a non-member."""
        key = gitlab_cache_key("member", project["id"], user_id)
        return self.cache.get(key, lambda: self.gitlab.member_access_level(project["id"], user_id),
                              ttl=self.config.cache_ttl) or 0

    def _check_access(self, project: dict, user: dict, ref: ProjectRef) -> None:
        level = self._access_level(project, user["id"])
        if not level:
            # A non-member learns no more than about a project that does not exist.
            raise ProjectNotFound(_not_found(ref))
        needed = self.config.min_access_level
        if level < needed:
            raise InsufficientAccess(
                f"GitLab user '{user.get('username')}' has {LEVEL_NAMES.get(level, level)} access in project "
                f"'{project['path_with_namespace']}'; the gateway requires {LEVEL_NAMES.get(needed, needed)} "
                f"(access level {needed}) or above.")

    def _ancestry(self, namespace: dict) -> tuple[str, ...]:
        if namespace.get("kind") != "group" or namespace.get("id") is None:
            return ()  # a personal project: no groups
        chain = [str(namespace["id"])]
        parent = namespace.get("parent_id")
        while parent is not None and len(chain) < 32:
            chain.append(str(parent))
            group = self.cache.get(gitlab_cache_key("group", parent),
                                   lambda gid=parent: _parent_only(self.gitlab.group(gid)), ttl=STRUCTURE_TTL)
            parent = (group or {}).get("parent_id")
        return tuple(chain)


def _job_project(project_id) -> ProjectRef | None:
    """The job's project as GitLab gave it (an integer id), as a reference."""
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id < 0:
        return None
    return project_ref(project_id)


def _not_found(ref: ProjectRef) -> str:
    """The one text for a project that does not exist and one the caller is not a member of."""
    return f"GitLab project '{ref.text}' does not exist, or you are not a member of it."


def _refusal(verdict: dict) -> GatewayError:
    """The caller's error for GitLab's refusal of their credential (see ``CredentialRejected``)."""
    reason, detail = verdict.get("reason"), verdict.get("detail") or ""
    if reason == "blocked":
        return UserBlocked(f"GitLab refused this credential: {detail or '403 Forbidden'}")
    if reason == "scope":
        named = f" (GitLab names: {detail})" if detail else ""
        return Unauthorized(f"This GitLab token lacks the scope to identify its user; it needs {USER_SCOPES}"
                            f"{named}.")
    return Unauthorized()


def _verdict(raw: bytes) -> dict:
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _user(data: dict) -> dict:
    """What the cache keeps of a user. ``is_admin``: GitLab's GET /user presents an administrator
    with ``Entities::UserWithAdmin`` (``expose :admin?, as: :is_admin``) and everyone else with
    ``UserPublic``, which has no such field (lib/api/users.rb, lib/api/entities/user_with_admin.rb); with
    Admin Mode on, only a token with the admin_mode scope is presented as one. A job's user
    (GET /job) never carries it. An identity cached before this field existed reads as not an admin."""
    return {"id": data.get("id"), "username": data.get("username"), "state": data.get("state", "active"),
            "is_admin": data.get("is_admin") is True}


def _username_only(user: dict | None) -> dict | None:
    return None if user is None else {"id": user.get("id"), "username": user.get("username")}


def _parent_only(group: dict | None) -> dict | None:
    return None if group is None else {"id": group.get("id"), "parent_id": group.get("parent_id")}


def _same_project(claim: ProjectRef, project: dict) -> bool:
    return claim.key in (str(project["id"]), str(project.get("path_with_namespace", "")).lower())
