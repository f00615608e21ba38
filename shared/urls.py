"""http(s) URLs in config files and environment variables (a provider's ``base_url``,
``GITLAB_URL``): checked the same way wherever an operator writes one."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def parse_http_url(text: str) -> str:
    """``text`` without surrounding blanks and trailing slashes (callers append paths to it);
    raises ``ValueError`` naming what was written unless it is an http or https URL with a host."""
    url = text.strip().rstrip("/")
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http or https URL, got {text!r}")
    return url


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (IPv6 with or without its brackets): a URL's host that
    only this machine reaches."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
