"""The project a request claims (``X-Gitlab-Project-Id``), checked before anything asks GitLab.

A reference is a project id (1-19 digits: GitLab's ids are 64-bit) or a full path:
at most 20 ``/``-separated segments of ``[A-Za-z0-9_.-]``, none ``.`` or ``..``,
at most 255 characters in all. Anything else is 400 before any GitLab call: an
empty, dot-only or over-long reference would otherwise reach GitLab with the
gateway's own token (``/projects/.`` becomes ``/projects/``, the project list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from shared.errors import InvalidRequest

HEADER = "X-Gitlab-Project-Id"
MAX_LENGTH = 255
MAX_SEGMENTS = 20
_ID = re.compile(r"[0-9]{1,19}")
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ProjectRef:
    text: str  # as the caller sent it (surrounding blanks removed): what refusals name
    key: str  # what identifies it: an id without leading zeros, or the path in lower case (GitLab's are)


@lru_cache(maxsize=4096)  # a caller's requests in a row send the same header (refusals are not cached)
def project_ref(raw: str | int | None) -> ProjectRef | None:
    """The checked reference; None for an absent or blank header; ``InvalidRequest`` otherwise."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    if _ID.fullmatch(text):
        return ProjectRef(text, str(int(text)))
    segments = text.split("/")
    if (len(text) <= MAX_LENGTH and len(segments) <= MAX_SEGMENTS and not text.isdigit()
            and all(_SEGMENT.fullmatch(s) and s not in (".", "..") for s in segments)):
        return ProjectRef(text, text.lower())
    raise InvalidRequest(
        f"{HEADER} must be a GitLab project id (up to 19 digits) or the project's full path, such as "
        f"'group/subgroup/project': at most {MAX_SEGMENTS} '/'-separated parts of letters, digits, '_', '.' "
        f"and '-', none of them '.' or '..', {MAX_LENGTH} characters in all.", param=HEADER)
