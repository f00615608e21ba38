"""What the API process checks before it serves anything.

A gateway without GitLab would admit anybody, so ``GITLAB_URL`` and
``GITLAB_API_TOKEN`` are required (``make run`` supplies its stand-in). The
gateway's token is checked once: refused means a broken deployment (exit 2);
a token that is not an administrator's only warns, because projects it cannot
see would look to the gateway as if callers were not members.
"""

from __future__ import annotations

import logging

from api.gitlab import CredentialRejected, GitLabClient
from shared.config import ConfigError, GatewayConfig, exit_on_config_error, load_config
from shared.errors import GitLabUnavailable
from shared.settings import Settings

log = logging.getLogger("aigw.api")


def load_api_settings() -> tuple[Settings, GatewayConfig]:
    """Settings and config for an API process; every problem is reported, then exit 2."""
    settings, problems = Settings.read()
    if not problems:  # once the rest parses: a malformed GITLAB_URL is named already, not as missing too
        if not settings.gitlab_url:
            problems.append("GITLAB_URL: required: the GitLab instance that vouches for callers "
                            "(`make run` starts a local stand-in when it is unset)")
        if not settings.gitlab_api_token:
            problems.append("GITLAB_API_TOKEN: required: the gateway's own GitLab token, with read_api "
                            "(an administrator's on self-managed GitLab)")
    try:
        config = load_config(settings.config_file_path)
    except ConfigError as error:
        problems += error.problems
    if problems:
        exit_on_config_error(problems)
    return settings, config


def check_gateway_token(settings: Settings, config: GatewayConfig) -> None:
    client = GitLabClient(settings.gitlab_url, settings.gitlab_api_token, config.gitlab)
    try:
        user = client.gateway_user()
    except CredentialRejected:
        exit_on_config_error([f"GITLAB_API_TOKEN: GitLab at {settings.gitlab_url} refused it "
                              "(invalid, expired or revoked)"])
    except GitLabUnavailable:
        log.warning("GitLab is unreachable at start; callers are verified once it answers",
                    extra={"gitlab_url": settings.gitlab_url})
        return
    if not user.get("is_admin"):
        log.warning("GITLAB_API_TOKEN is not an administrator's: projects and groups it cannot see will "
                    "look as if callers were not members of them", extra={"gitlab_user": user.get("username")})
    else:
        log.info("GitLab token checked", extra={"gitlab_user": user.get("username"), "gitlab_url": settings.gitlab_url})
