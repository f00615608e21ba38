"""Who is calling: the one place a request's identity is established, with GitLab.

Credentials: ``Authorization: Bearer``, ``PRIVATE-TOKEN`` or ``x-api-key`` (a
GitLab personal, project, group or OAuth token), or ``JOB-TOKEN`` (a CI job
token). Optional project claim: ``X-Gitlab-Project-Id`` (id or full path); a job
token's project is the job's own. GitLab answers are cached in Redis keyed by a
SHA-256 of the credential (``api.gitlab_cache``); a refused credential is
remembered for 10 s, so a flood of bad tokens is not a flood of GitLab calls.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from redis import Redis

from api.gitlab import CredentialRejected, GitLabClient
from api.gitlab_cache import GitLabCache, Rejected
from shared.config import GitLabConfig
from shared.errors import (
    InsufficientAccess,
    InvalidRequest,
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


@dataclass(frozen=True)
class Identity:
    user_id: str | None = None
    username: str | None = None
    project_id: str | None = None
    project_path: str | None = None
    group_ids: tuple[str, ...] = ()  # the project's group and every ancestor, nearest first
    credential: str | None = None  # "token" | "job"

    def log_fields(self) -> dict:
        return {"user_id": self.user_id, "username": self.username, "project_id": self.project_id}

    def job_fields(self) -> dict:
        """What a job may carry about its caller: ids for logs, never credentials."""
        return self.log_fields()

    def describe(self) -> str:
        where = f"project '{self.project_path}' (id {self.project_id})" if self.project_id else "no project"
        return f"user '{self.username}' with {where}"


@dataclass(frozen=True)
class Credential:
    kind: str  # "token" | "job"
    secret: str = field(repr=False)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.secret.encode()).hexdigest()


def credential_from(req) -> Credential:
    job_token = (req.get_header("JOB-TOKEN") or "").strip()
    if job_token:
        return Credential("job", job_token)
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
    if len(found) > 1:
        raise Unauthorized("The request carries two different credentials; send one.")
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
        credential = credential_from(req)
        user, job_project_id = self._who(credential)
        if user.get("state") != "active":
            raise UserBlocked(f"The GitLab user '{user.get('username')}' is {user.get('state')}; "
                              "only active users may use the gateway.")
        claim = (req.get_header("X-Gitlab-Project-Id") or "").strip() or None
        project = None
        if credential.kind == "job":
            project = self._project(job_project_id)
            if project is None:
                raise ProjectNotFound(f"The CI job's project (id {job_project_id}) is not visible to the gateway.")
            if claim and not _same_project(claim, project):
                raise ProjectMismatch(f"A CI job token may only act for its own project "
                                      f"'{project['path_with_namespace']}', not '{claim}'.")
        elif claim:
            project = self._project(claim)
            if project is None:
                raise ProjectNotFound(f"GitLab project '{claim}' does not exist, or the gateway cannot see it.")
        if project is None:
            return Identity(str(user["id"]), user.get("username"), credential=credential.kind)
        self._check_access(project, user)
        return Identity(str(user["id"]), user.get("username"), str(project["id"]), project["path_with_namespace"],
                        self._ancestry(project.get("namespace") or {}), credential.kind)

    # -- each lookup, cached ---------------------------------------------------
    def _who(self, credential: Credential) -> tuple[dict, int | None]:
        digest = credential.digest
        key = gitlab_cache_key(credential.kind, digest)
        known = self.cache.fresh(key, self.config.cache_ttl)  # the common case: no round trip at all
        if known is not None:
            return known["user"], known.get("project_id")
        if self.redis.exists(gitlab_rejected_key(digest)):
            raise Unauthorized()

        def fetch() -> dict:
            try:
                if credential.kind == "job":
                    job = self.gitlab.current_job(credential.secret)
                    return {"user": _user(job.get("user") or {}),
                            "project_id": (job.get("pipeline") or {}).get("project_id")}
                return {"user": _user(self.gitlab.current_user(credential.secret))}
            except CredentialRejected:
                self.redis.set(gitlab_rejected_key(digest), 1, ex=REJECTED_TTL)
                raise Rejected() from None

        try:
            value = self.cache.get(key, fetch, ttl=self.config.cache_ttl)
        except Rejected:
            raise Unauthorized() from None
        return value["user"], value.get("project_id")

    def _project(self, ref) -> dict | None:
        ref = str(ref).strip().strip("/")
        if not ref:
            raise InvalidRequest("X-Gitlab-Project-Id is empty.")

        def fetch() -> dict | None:
            found = self.gitlab.project(ref)
            if not found:
                return None
            namespace = found.get("namespace") or {}
            return {"id": found["id"], "path_with_namespace": found.get("path_with_namespace"),
                    "namespace": {k: namespace.get(k) for k in ("id", "kind", "full_path", "parent_id")}}

        return self.cache.get(gitlab_cache_key("project", ref.lower()), fetch, ttl=STRUCTURE_TTL,
                              ttl_if_none=MISSING_PROJECT_TTL)

    def _check_access(self, project: dict, user: dict) -> None:
        key = gitlab_cache_key("member", f"{project['id']}:{user['id']}")
        level = self.cache.get(key, lambda: self.gitlab.member_access_level(project["id"], user["id"]),
                               ttl=self.config.cache_ttl)
        needed = self.config.min_access_level
        if level < needed:
            has = f"has {LEVEL_NAMES.get(level, level)} access" if level else "is not a member"
            raise InsufficientAccess(
                f"GitLab user '{user.get('username')}' {has} in project '{project['path_with_namespace']}'; "
                f"the gateway requires {LEVEL_NAMES.get(needed, needed)} (access level {needed}) or above.")

    def _ancestry(self, namespace: dict) -> tuple[str, ...]:
        if namespace.get("kind") != "group" or namespace.get("id") is None:
            return ()  # a personal project: no groups
        chain = [str(namespace["id"])]
        parent = namespace.get("parent_id")
        while parent is not None and len(chain) < 32:
            chain.append(str(parent))
            group = self.cache.get(gitlab_cache_key("group", str(parent)),
                                   lambda gid=parent: _parent_only(self.gitlab.group(gid)), ttl=STRUCTURE_TTL)
            parent = (group or {}).get("parent_id")
        return tuple(chain)


def _user(data: dict) -> dict:
    return {"id": data.get("id"), "username": data.get("username"), "state": data.get("state", "active")}


def _parent_only(group: dict | None) -> dict | None:
    return None if group is None else {"id": group.get("id"), "parent_id": group.get("parent_id")}


def _same_project(claim: str, project: dict) -> bool:
    claim = claim.strip().strip("/")
    return claim == str(project["id"]) or claim.lower() == str(project.get("path_with_namespace", "")).lower()
