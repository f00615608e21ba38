"""Who is calling: the one place a request's identity is established.

GitLab authentication plugs in here. Until it does, every caller is anonymous
and nothing is refused on identity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    user_id: str | None = None
    username: str | None = None
    project_id: str | None = None
    project_path: str | None = None
    group_ids: tuple[str, ...] = ()

    def log_fields(self) -> dict:
        return {"user_id": self.user_id, "username": self.username, "project_id": self.project_id}

    def job_fields(self) -> dict:
        """What a job may carry about its caller: ids for logs, never credentials."""
        return {"user_id": self.user_id, "username": self.username, "project_id": self.project_id}


ANONYMOUS = Identity()


class Authenticator:
    def identify(self, req) -> Identity:
        return ANONYMOUS
