"""The client's headers a job carries to the worker, for a provider that speaks the client's format.

A small allow-list per endpoint, never a credential: an Anthropic client's
``anthropic-version`` and ``anthropic-beta`` reach Anthropic with its request
(passthrough), so the betas it turns on (Claude Code's) work as they would
directly. Translated requests ignore them. Each value is bounded by the web
worker's header limit (8190 bytes).
"""

from __future__ import annotations

ANTHROPIC = ("anthropic-version", "anthropic-beta")


def client_headers(req, names: tuple[str, ...]) -> dict[str, str]:
    """The headers of ``names`` the request carries (a repeated header's values comma-joined)."""
    found = {}
    for name in names:
        value = req.get_header(name)
        if value:
            found[name] = value
    return found
