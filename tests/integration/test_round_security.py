"""This round's new surfaces as an attacker sees them, each on a real stack (tests/harness.py).

Compose runs the API with ``FORWARDED_ALLOW_IPS=*`` behind nginx, whose
``$proxy_add_x_forwarded_for`` keeps the X-Forwarded-For the client sent and appends the client's
real address (deploy/proxy/nginx.conf). Every address counted as trusted then, so the left-most
entry, the client's own words, named the client: anyone could pick the address their requests
were counted (and logged) under, escape their own connection allowance and use up another
client's. Here the test client plays nginx: its connections come from loopback, with the header
nginx would send.
"""

from __future__ import annotations

import time

import pytest

from tests.harness import Stack, wait_for
from tests.integration.raw_http import chat_request, connect, read_answer

CONFIG = """
models:
  - name: chat
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 4s
    workers: 1
"""
CAP = 3
ATTACKER = "198.51.100.20"  # the address nginx saw
VICTIM = "203.0.113.9"  # another client's address, which the attacker writes into its header


@pytest.fixture(scope="module")
def behind_star(tmp_path_factory):
    # One web process, so that every connection meets the same cap (as test_web_edge.py).
    with Stack(tmp_path_factory.mktemp("round-security"), CONFIG, web_workers=1, web_threads=8, env={
            "FORWARDED_ALLOW_IPS": "*", "MAX_CONNECTIONS_PER_ADDRESS": str(CAP)}) as gateway:
        yield gateway


def via_nginx(stack: Stack, request_id: str, client_header: str | None, real_client: str):
    """A request as nginx forwards it: the client's own X-Forwarded-For, then the address nginx saw."""
    forwarded = f"{client_header}, {real_client}" if client_header else real_client
    extra = f"X-Forwarded-For: {forwarded}\r\nX-Request-Id: {request_id}\r\n".encode()
    with connect(stack.port) as sock:
        sock.sendall(chat_request("who am i", extra=extra))
        return read_answer(sock)


def test_behind_a_star_proxy_the_client_is_the_address_the_proxy_wrote(behind_star):
    assert via_nginx(behind_star, "star-spoof", VICTIM, ATTACKER).status == 200
    assert via_nginx(behind_star, "star-plain", None, ATTACKER).status == 200
    assert behind_star.access_record("star-spoof")["client"] == ATTACKER
    assert behind_star.access_record("star-plain")["client"] == ATTACKER


def test_behind_a_star_proxy_no_client_uses_up_anothers_connections(behind_star):
    """The attacker holds CAP requests (their heads whole, their bodies pending: as long streams
    would) naming the victim in its header; the victim is still served, the attacker is capped."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"X-Forwarded-For: %s, %s\r\nContent-Length: 10\r\n\r\n" % (VICTIM.encode(), ATTACKER.encode()))
    held = [connect(behind_star.port) for _ in range(CAP)]
    try:
        for sock in held:
            sock.sendall(head)
        time.sleep(0.3)  # each head is read and counted; nothing observable to poll for
        victim = via_nginx(behind_star, "star-victim", None, VICTIM)
        assert victim.status == 200, victim.body
        attacker = wait_for(lambda: (lambda a: a if a.status == 429 else None)(
            via_nginx(behind_star, "star-attacker", "192.0.2.77", ATTACKER)), timeout=5,
            message="the attacker's own cap")
        assert attacker.json()["error"]["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
