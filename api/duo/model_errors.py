"""A model's failure as GitLab shows it: GitLab's AI gateway answers a prompt whose model failed
421 ``{"detail": "<status>: <reason>"}`` (Misdirected Request: the model's error, not the AI
gateway's; ai_gateway/api/v1/prompts/invoke.py, any exception with a ``status_code``), and GitLab
shows "The self-hosted model server returned code <detail>" for the admin's Test connection.
Used by that check (``api.duo.check``) and by slash commands answered whole (``api.duo.resources``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from redis.exceptions import RedisError

from shared.breaker import FAILED, DeploymentState
from shared.errors import (
    DeploymentsUnavailable,
    GatewayError,
    UpstreamAuthError,
    UpstreamFailure,
    UpstreamModelNotFound,
    UpstreamRateLimited,
)

_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")
_FAILED_STATUS = re.compile(r"http_\d{3}")  # a failed deployment's reason (shared.breaker)
_STATUS_OF = {UpstreamAuthError: 401, UpstreamModelNotFound: 404, UpstreamRateLimited: 429}


class DuoModelServerError(GatewayError):
    """The model's server failed the probe: GitLab shows ``detail`` ("<status>: <reason>")."""

    status = 421
    code = "duo_model_server_error"


def model_server_error(error: GatewayError, states: Callable[[], dict[str, DeploymentState]]
                       ) -> DuoModelServerError | None:
    """A provider's failure as GitLab shows it (421 "<status>: <reason>"); None for the gateway's own
    (a lost worker, a timeout, no HTTP answer at all: not the model server's code).

    A model whose deployments' health is kept (``shared.breaker``) answers ``DeploymentsUnavailable``
    instead: with the provider's status in its last error when this call reached the provider, or,
    when a deployment is failed already (a 401 or 403 took it out, until a reload or ``python -m
    workers.inspect deployments --clear``), none, since nothing was sent. The admin who presses Test
    connection then still sees the model server's code, and why it is not asked again."""
    if isinstance(error, DeploymentsUnavailable):
        found = _HTTP_STATUS.search(error.message)
        if found:
            return DuoModelServerError(f"{found.group(1)}: {error.message}")
        try:
            failed = [(name, state.reason) for name, state in states().items()
                      if state.state == FAILED and _FAILED_STATUS.fullmatch(state.reason)]
        except RedisError:
            failed = []
        if failed:
            name, reason = failed[0]
            status = reason.removeprefix("http_")
            return DuoModelServerError(
                f"{status}: deployment '{name}' is failed since its provider answered {status}; it is not called "
                "again until the gateway's config is reloaded or python -m workers.inspect deployments --clear")
        return None
    if not isinstance(error, UpstreamFailure):
        return None
    found = _HTTP_STATUS.search(error.message)
    status = _STATUS_OF.get(type(error)) or (int(found.group(1)) if found else None)
    if status is None:
        return None  # no HTTP answer at all (refused, TLS, timeout)
    return DuoModelServerError(f"{status}: {error.message}")

