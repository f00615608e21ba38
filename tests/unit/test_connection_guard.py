"""Whose a connection is, and the per-client connection cap (api.connection_guard)."""

from __future__ import annotations

import pytest

from api.connection_guard import ClientTally, TrustedProxies, client_address, count_key, parse_ip

PROXIES = TrustedProxies.parse("10.0.0.0/8, 192.0.2.7, ::1")


def test_trusted_addresses_and_networks() -> None:
    assert "10.1.2.3" in PROXIES and "192.0.2.7" in PROXIES and "::1" in PROXIES
    assert "192.0.2.8" not in PROXIES and "11.0.0.1" not in PROXIES and "::2" not in PROXIES
    assert "not an address" not in PROXIES
    assert "203.0.113.1" in TrustedProxies.parse("*")
    assert "127.0.0.1" not in TrustedProxies.parse("")


def test_a_bad_entry_is_named() -> None:
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        TrustedProxies.parse("10.0.0.1, 10.0.0.0/33")


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_address("203.0.113.9", "198.51.100.1", PROXIES) == "203.0.113.9"
    assert client_address("203.0.113.9", None, PROXIES) == "203.0.113.9"


def test_behind_trusted_proxies_the_right_most_untrusted_address() -> None:
    # The client wrote 1.1.1.1 itself; the first proxy appended the address it saw.
    assert client_address("10.0.0.2", "1.1.1.1, 198.51.100.4, 10.0.0.9", PROXIES) == "198.51.100.4"
    assert client_address("10.0.0.2", "198.51.100.4", PROXIES) == "198.51.100.4"
    assert client_address("10.0.0.2", "198.51.100.4:5512", PROXIES) == "198.51.100.4"
    assert client_address("::1", "[2001:db8::7]:443", PROXIES) == "2001:db8::7"


def test_a_trusted_peer_without_forwarding_is_the_client() -> None:
    assert client_address("10.0.0.2", None, PROXIES) == "10.0.0.2"
    assert client_address("10.0.0.2", "", PROXIES) == "10.0.0.2"


def test_star_believes_only_the_entry_the_peer_wrote() -> None:
    # nginx's $proxy_add_x_forwarded_for: the client's own header, then the address nginx saw.
    everyone = TrustedProxies.parse("*")
    assert client_address("10.0.0.2", "203.0.113.9, 198.51.100.4", everyone) == "198.51.100.4"
    assert client_address("10.0.0.2", "198.51.100.4:5512", everyone) == "198.51.100.4"
    assert client_address("10.0.0.2", "203.0.113.9, unknown", everyone) == "10.0.0.2"


def test_every_hop_trusted_gives_the_left_most() -> None:
    assert client_address("10.0.0.2", "10.0.0.4, 10.0.0.3", PROXIES) == "10.0.0.4"


def test_an_entry_that_is_not_an_address_ends_the_walk_at_the_hop_that_wrote_it() -> None:
    assert client_address("10.0.0.2", "1.1.1.1, unknown, 10.0.0.3", PROXIES) == "10.0.0.3"
    assert client_address("10.0.0.2", "garbage", PROXIES) == "10.0.0.2"


def test_addresses_as_peers_and_proxies_write_them() -> None:
    assert str(parse_ip(" 198.51.100.4 ")) == "198.51.100.4"
    assert str(parse_ip("::ffff:198.51.100.4")) == "198.51.100.4"
    assert str(parse_ip("[2001:db8::1]")) == "2001:db8::1"
    assert parse_ip("example.com") is None and parse_ip("") is None


def test_ipv6_clients_count_by_their_64() -> None:
    assert count_key("2001:db8:1:2:aaaa::1") == count_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert count_key("2001:db8:1:3::1") != count_key("2001:db8:1:2::1")
    assert count_key("198.51.100.4") == "198.51.100.4"
    assert count_key("::ffff:198.51.100.4") == "198.51.100.4"


def test_counts_cap_each_client_alone() -> None:
    counts = ClientTally(2)
    assert counts.acquire("a") and counts.acquire("a")
    assert not counts.acquire("a")
    assert counts.acquire("b")
    counts.release("a")
    assert counts.held("a") == 1
    assert counts.acquire("a")
    for _ in range(3):
        counts.release("b")
    assert counts.held("b") == 0  # never below zero


def test_a_tally_of_body_bytes_refuses_what_would_take_a_client_past_its_cap() -> None:
    bodies = ClientTally(100)
    assert bodies.acquire("a", 60) and not bodies.acquire("a", 41) and bodies.acquire("a", 40)
    assert bodies.acquire("b", 100)  # each client alone
    bodies.release("a", 60)
    assert bodies.held("a") == 40
    bodies.release("a", 40)
    assert bodies.held("a") == 0
