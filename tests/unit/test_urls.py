"""URLs an operator writes (shared.urls)."""

from __future__ import annotations

import pytest

from shared.urls import is_loopback_host, parse_http_url


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("10.0.0.1", False), ("gitlab.example.com", False), ("localhost.example.com", False),
    ("", False),
])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_an_http_url_loses_blanks_and_trailing_slashes_and_anything_else_is_refused() -> None:
    assert parse_http_url("  https://gitlab.example.com/// ") == "https://gitlab.example.com"
    for text in ("gitlab.example.com", "ftp://host/", "https://", "http://[::1"):
        with pytest.raises(ValueError, match="must be an http or https URL"):
            parse_http_url(text)
