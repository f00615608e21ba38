"""What the API process checks before it serves anything, and the configuration it serves with.

A gateway without GitLab would admit anybody, so ``GITLAB_URL`` and
``GITLAB_API_TOKEN`` are required (``make run`` supplies its stand-in). The
gateway's token is checked once: refused means a broken deployment (exit 2);
a token that is not an administrator's only warns, because projects it cannot
see would look to the gateway as if callers were not members.

gunicorn runs ``config/gunicorn.conf.py`` at start and again on every SIGHUP, in its
master, which then replaces its workers (gracefully: each finishes the requests it
holds). ``accept`` is what that file calls: at start a problem exits 2, as ever; on
a reload a problem keeps the configuration already in force, and logs why, so an
invalid file never takes the master down. The workers gunicorn forks serve with
the configuration the master accepted (``served``), never a file read since.
"""

from __future__ import annotations

import logging

from api.gitlab import CredentialRejected, GitLabClient
from shared.config import ConfigError, GatewayConfig, exit_on_config_error, load_config
from shared.errors import GitLabUnavailable
from shared.logs import setup_logging
from shared.settings import Settings

log = logging.getLogger("aigw.api")


# What the master accepted last (set by ``accept``); the workers it forks inherit it. The
# metrics server's list of models is kept current in place: it holds a reference to it.
_accepted: tuple[Settings, GatewayConfig] | None = None
MODEL_NAMES: list[str] = []
# The longest max_stream_duration of any configuration accepted since start: a web worker forked
# under an earlier one may still hold such a stream when a reload replaces it.
_longest_stream = 0.0


def read_api_settings() -> tuple[Settings, GatewayConfig]:
    """Settings and config for an API process, or ``ConfigError`` with every problem."""
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
        raise ConfigError(problems)
    return settings, config


def load_api_settings() -> tuple[Settings, GatewayConfig]:
    """Settings and config for an API process; every problem is reported, then exit 2."""
    try:
        return read_api_settings()
    except ConfigError as error:
        exit_on_config_error(error.problems)


def accept() -> tuple[Settings, GatewayConfig, bool]:
    """The settings and config gunicorn's master serves with, and whether this is a reload.

    At start: read them (a problem exits 2) and set up logging. On a reload (SIGHUP): read the
    file again; a problem is logged and the configuration in force kept, so the master lives on
    and its new workers serve as the old ones did."""
    global _accepted
    if _accepted is None:
        settings, config = load_api_settings()
        setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir, process_name="api-master")
        _warn(config)
        _keep(settings, config)
        return settings, config, False
    previous = _accepted[1]
    try:
        settings, config = read_api_settings()
    except ConfigError as error:
        log.error("configuration reload refused: the previous configuration stays in force",
                  extra={"problems": error.problems, "config_file": _accepted[0].config_file_path})
        return *_accepted, True
    setup_logging(settings.log_level, settings.log_format, log_dir=settings.log_dir, process_name="api-master")
    _warn(config)
    _keep(settings, config)
    before, after = [m.name for m in previous.models], [m.name for m in config.models]
    log.info("configuration reloaded: new web workers serve it; the old ones finish their requests",
             extra={"config_file": settings.config_file_path, "models": after,
                    "added": [name for name in after if name not in before],
                    "removed": [name for name in before if name not in after]})
    return settings, config, True


def served() -> tuple[Settings, GatewayConfig]:
    """What a web worker serves with: the configuration its master accepted (inherited through
    the fork), or, where no master accepted one (the app imported on its own), the file read now."""
    return _accepted if _accepted is not None else load_api_settings()


def longest_stream() -> float:
    """What a graceful stop of the web workers must wait for: the longest stream any of them may
    be serving (``max_stream_duration`` of every configuration accepted since start)."""
    return _longest_stream


def _keep(settings: Settings, config: GatewayConfig) -> None:
    global _accepted, _longest_stream
    _accepted = (settings, config)
    _longest_stream = max(_longest_stream, config.max_stream_duration)
    MODEL_NAMES[:] = [model.name for model in config.models]


def _warn(config: GatewayConfig) -> None:
    for warning in config.warnings:
        log.warning(warning)


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
