"""This round's new surfaces as an attacker sees them, each on a real stack (tests/harness.py).

Compose runs the API with ``FORWARDED_ALLOW_IPS=*`` behind nginx, whose
``$proxy_add_x_forwarded_for`` keeps the X-Forwarded-For the client sent and appends the client's
real address (deploy/proxy/nginx.conf). Every address counted as trusted then, so the left-most
entry, the client's own words, named the client: anyone could pick the address their requests
were counted (and logged) under, escape their own connection allowance and use up another
client's. Here the test client plays nginx: its connections come from loopback, with the header
nginx would send.

GitLab Duo's requests carry the self-hosted model's endpoint and API key as GitLab's admin typed
them: neither may choose where the call goes, nor reach a job, Redis or a log.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.gitlab_oidc import INSTANCE_ID
from tests.duo_requests import mint
from tests.harness import Stack, wait_for
from tests.integration.raw_http import chat_request, connect, read_answer
from tests.stack_models import sandbox_model

CONFIG = "models:\n" + sandbox_model("chat", timeout="4s")
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


# -- GitLab Duo: the model endpoint and API key GitLab sends -------------------------------------------
DUO_SECRET = "sk-duo-" + uuid.uuid4().hex  # what GitLab's admin typed as the model's API key


def redis_text(stack: Stack) -> str:
    """Every value in the stack's Redis, RQ's compressed job data uncompressed, as one text."""
    client, found = stack.redis(), []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            found.append(client.get(key) or b"")
        elif kind == "hash":
            for value in client.hgetall(key).values():
                try:
                    found.append(zlib.decompress(value))
                except zlib.error:
                    found.append(value)
        elif kind == "list":
            found += client.lrange(key, 0, -1)
        elif kind == "zset":
            found += client.zrange(key, 0, -1)
        elif kind == "stream":
            found += [v for _, fields in client.xrange(key) for v in fields.values()]
    return b"\n".join(found).decode("utf-8", "replace")


def test_duo_model_endpoint_and_key_choose_nothing_and_are_kept_nowhere(behind_star):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"  # where GitLab would send the call
    token = mint(behind_star)
    rid = "duo-endpoint-" + uuid.uuid4().hex[:8]
    question = f"Which endpoint answers {rid}? [[sandbox delay_ms=1500]]"  # long enough to read the job meanwhile
    body = {"messages": [{"role": "user", "content": question}],
            "model_metadata": {"provider": "openai", "name": "mistral", "endpoint": endpoint,
                               "api_key": DUO_SECRET, "identifier": "custom_openai/chat"}}
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(requests.post, f"{behind_star.url}/v2/chat/agent", data=json.dumps(body), timeout=30,
                           headers={"Authorization": f"Bearer {token}", "X-Gitlab-Authentication-Type": "oidc",
                                    "Content-Type": "application/json", "x-gitlab-instance-id": INSTANCE_ID,
                                    "x-gitlab-realm": "self-managed", "x-gitlab-user-id": "2", "X-Request-ID": rid})
        stored = wait_for(lambda: (lambda text: text if f"Which endpoint answers {rid}?" in text else None)(
            redis_text(behind_star)), timeout=10, message="the job's record in Redis")
        answer = sent.result()
    assert DUO_SECRET not in stored and endpoint not in stored
    try:
        assert answer.status_code == 200, answer.text
        assert "final_answer_delta" in answer.text
        with pytest.raises(TimeoutError):
            listener.accept()[0].close()  # nothing ever connected to the endpoint GitLab named
    finally:
        listener.close()
    assert all(DUO_SECRET not in json.dumps(entry) and endpoint not in json.dumps(entry)
               for entry in behind_star.sandbox_log())
    assert behind_star.access_record(rid)["status"] == 200
    assert DUO_SECRET not in behind_star.logs()
