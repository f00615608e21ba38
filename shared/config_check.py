"""``python -m shared.config check [PATH]``: validate a config file and print a summary without API keys."""

from __future__ import annotations

import argparse

from shared.config import (
    DEFAULT_CONFIG_PATH,
    MATCH_KEYS,
    ConfigError,
    GatewayConfig,
    RateLimit,
    exit_on_config_error,
    load_config,
)
from shared.durations import format_duration
from shared.settings import Settings
from shared.sizes import format_size


def format_summary(config: GatewayConfig, source: str) -> str:
    """What ``check`` prints: enough to review a deployment, but never an API key."""
    lines = [f"{source}: OK", f"models ({len(config.models)}):"]
    for m in config.models:
        lines += [f"  {m.name}: type {m.type}, base_url {m.base_url}, upstream model {m.model}",
                  f"    timeout {format_duration(m.timeout)}, workers {m.workers} x {m.concurrency}, "
                  f"max_queue_depth {m.max_queue_depth}, rate limits: {_limits(m.rate_limit)}",
                  f"    reasoning {m.reasoning_control}, drop_params {_names(m.drop_params)}"
                  + (", /v1/responses passed through" if m.native_responses_api else ""),
                  f"    api key: {'set' if m.api_key else 'not set'}"]
        for d in m.deployments:  # the long form: the lines above are its first deployment's
            lines.append(f"    deployment {d.name}: type {d.type}, base_url {d.base_url}, upstream model {d.model}, "
                         f"weight {d.weight}, rate limits: {_limits(d.rate_limit)}, "
                         f"api key: {'set' if d.api_key else 'not set'}")
        if m.uses_breaker:
            b = m.breaker
            lines.append(f"    breaker: {b.failures} failures in {format_duration(b.window)} cool down "
                         f"{format_duration(b.cool_down)} (Retry-After up to {format_duration(b.max_cool_down)}), "
                         f"{b.forbidden} consecutive 403s fail it")
        if m.fallbacks or m.context_window_fallback:
            lines.append(f"    fallbacks {_names(m.fallbacks)}, context_window_fallback "
                         f"{m.context_window_fallback or 'none'}")
    lines.append(f"routes ({len(config.routes)}):" if config.routes_configured else "routes: not configured")
    for r in config.routes:
        match = ", ".join(f"{key}={'|'.join(getattr(r.match, key))}"
                          for key in MATCH_KEYS if getattr(r.match, key) is not None)
        lines.append(f"  {r.name}: match {match or 'any request'} -> "
                     f"{r.destination or 'the requested model'}, rate limits: {_limits(r.rate_limit)}")
    lines.append(f"defaults: drop_params {_names(config.defaults.drop_params)}")
    g, j = config.gitlab, config.jobs
    lines.append(f"gitlab: timeout {format_duration(g.timeout)}, min_access_level {g.min_access_level}, "
                 f"cache_ttl {format_duration(g.cache_ttl)}, local_cache_ttl {format_duration(g.local_cache_ttl)}, "
                 f"outage_grace {format_duration(g.outage_grace)}")
    lines.append(f"jobs: result_ttl {format_duration(j.result_ttl)}, "
                 f"failure_ttl {format_duration(j.failure_ttl)}, "
                 f"max_unread_reply_bytes {format_size(j.max_unread_reply_bytes)}")
    lines.append(_duo(config))
    lines.append(f"warnings ({len(config.warnings)}):" if config.warnings else "warnings: none")
    lines += [f"  warning: {w}" for w in config.warnings]
    return "\n".join(lines)


def _duo(config: GatewayConfig) -> str:
    """GitLab Duo: who may call, what serves each feature, whose prompts are overridden."""
    duo = config.duo
    features = ", ".join(f"{feature} -> {model}" for feature, model in duo.features.items())
    prompts = ", ".join(f"{name} ({', '.join(_overrides(p))})" for name, p in duo.prompts.items())
    return (f"duo: instances {_names(duo.instance_ids) if duo.instance_ids else 'any GITLAB_URL vouches for'}, "
            f"features {features or 'none named'} (otherwise the model GitLab names), "
            f"prompts overridden {prompts or 'none'}")


def _overrides(prompts) -> list[str]:
    found = [f"family {prompts.family}"] if prompts.family else []
    found += ["fim_suffix"] if prompts.fim_suffix else []
    return found + sorted(prompts.templates)


def _names(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(names) + "]" if names else "none"


def _limits(limit: RateLimit) -> str:
    parts = [f"{value} {unit}" for value, unit in ((limit.requests_per_minute, "requests/min"),
             (limit.tokens_per_minute, "tokens/min"), (limit.requests_per_day, "requests/day")) if value]
    return (", ".join(parts) or "none") + (f" per {limit.per}" if limit.per else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.config", description="AI gateway config file")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a config file and print a summary")
    check.add_argument("path", nargs="?", help="default: $CONFIG_FILE_PATH, else " + DEFAULT_CONFIG_PATH)
    args = parser.parse_args(argv)
    # CONFIG_FILE_PATH as every process reads it; a malformed other variable is not this command's business.
    path = args.path or Settings.read()[0].config_file_path
    try:
        config = load_config(path)
    except ConfigError as exc:
        exit_on_config_error(exc.problems)
    print(format_summary(config, path))
    return 0
