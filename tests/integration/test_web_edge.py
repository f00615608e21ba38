"""The web worker's edge (api.web_worker) on a real gunicorn: requests received whole before
a thread serves them, the head and body timeouts, the per-client connection cap, who the
client is behind a trusted proxy, gunicorn's own refusals as JSON, keep-alive and
pipelining, 100-continue, a response nobody reads, gunicorn's log lines as JSON."""

from __future__ import annotations

import json
import time

import pytest

from tests.harness import Stack, wait_for
from tests.integration.conftest import CORE_CONFIG
from tests.integration.raw_http import AUTH, chat_request, closed_by_peer, connect, read_answer

PROXY = "127.0.0.5"  # the only trusted proxy of this stack
CAP = 4
HEADER_TIMEOUT = 3
BODY_TIMEOUT = 4


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # One web process, so that every connection of a client meets the same cap.
    with Stack(tmp_path_factory.mktemp("edge"), CORE_CONFIG, web_workers=1, web_threads=8, env={
        "MAX_BODY_BYTES": "65536", "MAX_CONNECTIONS_PER_ADDRESS": str(CAP), "FORWARDED_ALLOW_IPS": PROXY,
        "REQUEST_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "REQUEST_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "RESPONSE_WRITE_TIMEOUT": "1", "LOG_LEVEL": "debug"}) as gateway:
        yield gateway


def exchange(stack: Stack, data: bytes, source: str = "127.0.0.1"):
    with connect(stack.port, source) as sock:
        sock.sendall(data)
        return read_answer(sock)


# -- gunicorn's own refusals ---------------------------------------------------------------
@pytest.mark.parametrize(("data", "status", "code"), [
    (b"GARBAGE\r\n\r\n", 400, "invalid_request"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: gateway\r\n\r\n", 414, "request_line_too_long"),
    (b"GET / HTTP/1.1\r\nHost: gateway\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "header_fields_too_large"),
    (b"GET / HTTP/1.1\r\nHost: gateway\r\nBad Header: 1\r\n\r\n", 400, "invalid_request"),
    (b"POST / HTTP/1.1\r\nHost: gateway\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab", 400, "invalid_request"),
    (b"POST / HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: br\r\n\r\n", 501, "unsupported_transfer_coding"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
     "invalid_request"),
], ids=["request-line", "414", "431", "header-name", "two-lengths", "501", "chunk-size"])
def test_gunicorns_own_refusals_are_json(stack, data, status, code):
    answer = exchange(stack, data)
    assert answer.status == status
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert (error["code"], error["type"]) == (code, "invalid_request_error")
    assert b"<html" not in answer.body and b"Traceback" not in answer.body


@pytest.mark.parametrize(("target", "extra"), [
    ("/v1/messages", b""),
    ("/v1/models", b"anthropic-version: 2023-06-01\r\n"),
], ids=["messages", "models-anthropic"])
def test_gunicorns_own_refusals_come_in_the_endpoints_format_with_the_request_id(stack, target, extra):
    answer = exchange(stack, b"POST " + target.encode() + b" HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: br\r\n"
                      + extra + b"X-Request-Id: refused-1\r\n\r\n")
    assert answer.status == 501
    assert answer.headers["x-request-id"] == "refused-1"
    body = answer.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"


def test_gunicorns_own_refusals_of_gitlab_duo_come_in_its_ai_gateways_format(stack):
    """GitLab reads a Duo endpoint's errors only in its AI gateway's shapes ({"detail": ...})."""
    answer = exchange(stack, b"POST /v2/code/completions HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: br\r\n"
                      b"X-Request-Id: refused-duo\r\n\r\n")
    assert answer.status == 501 and answer.headers["x-request-id"] == "refused-duo"
    assert list(answer.json()) == ["detail"] and isinstance(answer.json()["detail"], str)


# -- timeouts ------------------------------------------------------------------------------
def test_a_connection_that_sends_nothing_is_closed_silently_after_the_header_timeout(stack):
    started = time.monotonic()
    with connect(stack.port) as sock:
        assert closed_by_peer(sock, timeout=HEADER_TIMEOUT + 5) == b""
    assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5


def test_a_head_that_stalls_is_answered_408_and_closed(stack):
    started = time.monotonic()
    with connect(stack.port) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n")
        answer = read_answer(sock)
        assert closed_by_peer(sock, timeout=5) == b""
    assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5
    assert answer.status == 408 and answer.headers["connection"] == "close"
    assert answer.json()["error"]["code"] == "request_timeout"


def test_a_body_that_stalls_is_answered_408_in_the_endpoints_format(stack):
    started = time.monotonic()
    with connect(stack.port) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nX-Request-Id: stalled-body\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\":")
        answer = read_answer(sock)
    assert time.monotonic() - started >= BODY_TIMEOUT - 0.5
    assert answer.status == 408 and answer.headers["x-request-id"] == "stalled-body"
    assert answer.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": f"The request body did not arrive within {BODY_TIMEOUT} s."}}
    record = stack.access_record("stalled-body")
    assert (record["status"], record["error_code"], record["client"]) == (408, "request_timeout", "127.0.0.1")


def test_a_head_and_body_sent_slowly_within_the_timeouts_are_served(stack):
    data = chat_request("slowly")
    head_end = data.index(b"\r\n\r\n") + 4
    head, body = data[:head_end], data[head_end:]
    with connect(stack.port) as sock:
        for piece in (head[:20], head[20:60], head[60:]):
            sock.sendall(piece)
            time.sleep(0.4)
        step = len(body) // 4 + 1
        for start in range(0, len(body), step):
            sock.sendall(body[start:start + step])
            time.sleep(0.5)
        answer = read_answer(sock)
    assert answer.status == 200, answer.body
    assert answer.json()["choices"][0]["message"]["content"] == "Sandbox reply: slowly"


# -- bodies --------------------------------------------------------------------------------
def test_a_chunked_body_with_extensions_and_trailers_is_served(stack):
    body = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "in chunks"}]}).encode()
    chunks = b"".join(b"%x;part=%d\r\n%s\r\n" % (len(piece), i, piece)
                      for i, piece in enumerate((body[:7], body[7:30], body[30:])))
    answer = exchange(stack, b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n" + AUTH
                      + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + chunks + b"0\r\nX-Checksum: none\r\n\r\n")
    assert answer.status == 200, answer.body
    assert answer.json()["choices"][0]["message"]["content"] == "Sandbox reply: in chunks"


def test_a_chunked_body_over_the_limit_is_refused_before_it_ends(stack):
    with connect(stack.port) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n"
                     b"X-Request-Id: chunked-413\r\n\r\n")
        for _ in range(17):  # 68 KiB, over the stack's 64 KiB; no last chunk
            sock.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
        answer = read_answer(sock)
        assert closed_by_peer(sock, timeout=5) == b""
    assert answer.status == 413
    assert answer.json()["error"]["type"] == "request_too_large"  # Anthropic's format: /v1/messages
    assert stack.access_record("chunked-413")["error_code"] == "payload_too_large"


def test_a_length_over_the_limit_is_answered_by_the_app_without_the_body(stack):
    with connect(stack.port) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000000\r\n\r\n")
        answer = read_answer(sock)
    assert answer.status == 413 and answer.json()["error"]["code"] == "payload_too_large"


def test_expect_100_continue_is_answered_once(stack):
    data = chat_request("expecting", extra=b"Expect: 100-continue\r\n")
    head_end = data.index(b"\r\n\r\n") + 4
    with connect(stack.port) as sock:
        sock.sendall(data[:head_end])
        buffered = bytearray()
        while b"\r\n\r\n" not in buffered:
            buffered += sock.recv(65536)
        assert bytes(buffered) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data[head_end:])
        answer = read_answer(sock)
    assert answer.status == 200, answer.body
    assert answer.json()["choices"][0]["message"]["content"] == "Sandbox reply: expecting"


# -- connections kept alive ------------------------------------------------------------------
def test_keep_alive_serves_request_after_request_on_one_connection(stack):
    with connect(stack.port) as sock:
        for n in range(3):
            sock.sendall(chat_request(f"again {n}"))
            answer = read_answer(sock)
            assert answer.status == 200 and answer.headers["connection"] == "keep-alive"
            assert answer.json()["choices"][0]["message"]["content"] == f"Sandbox reply: again {n}"


def test_pipelined_requests_are_answered_in_order(stack):
    pipelined = (chat_request("first") + b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n"
                 + chat_request("third", close=True))
    with connect(stack.port) as sock:
        sock.sendall(pipelined)
        buffered = bytearray()
        answers = [read_answer(sock, buffered) for _ in range(3)]
        assert closed_by_peer(sock, timeout=5) == b""
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].json()["choices"][0]["message"]["content"] == "Sandbox reply: first"
    assert answers[1].json() == {"status": "ok"}
    assert answers[2].json()["choices"][0]["message"]["content"] == "Sandbox reply: third"


# -- the per-client connection cap -----------------------------------------------------------
def test_the_connection_over_the_cap_is_refused_while_other_clients_are_served(stack):
    held = [connect(stack.port, "127.0.0.3") for _ in range(CAP)]
    try:
        time.sleep(0.3)  # all accepted: the refusal below is about the cap, not about timing
        with connect(stack.port, "127.0.0.3") as extra:
            refused = read_answer(extra)
            assert closed_by_peer(extra, timeout=5) == b""
        assert refused.status == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == {"message": "Too many connections from your address.",
                                           "type": "rate_limit_error", "param": None,
                                           "code": "too_many_connections"}
        other = exchange(stack, chat_request("meanwhile"), source="127.0.0.4")
        assert other.status == 200
        for sock in held:  # the held connections were never refused: each is served
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            assert read_answer(sock).status == 200
        held.pop().close()

        def served_again():
            with connect(stack.port, "127.0.0.3") as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
                return read_answer(sock).status == 200

        wait_for(served_again, timeout=10, interval=0.2, message="a slot freed by a closed connection")
    finally:
        for sock in held:
            sock.close()


# -- who the client is ----------------------------------------------------------------------
def test_x_forwarded_for_is_believed_from_a_trusted_proxy_only(stack):
    cases = {
        "xff-trusted": (PROXY, "203.0.113.9", "203.0.113.9"),
        "xff-chain": (PROXY, "198.51.100.1, 203.0.113.10, 127.0.0.5", "203.0.113.10"),
        "xff-spoofed": ("127.0.0.6", "203.0.113.9", "127.0.0.6"),
    }
    for request_id, (source, forwarded, _) in cases.items():
        extra = f"X-Forwarded-For: {forwarded}\r\nX-Request-Id: {request_id}\r\n".encode()
        assert exchange(stack, chat_request("who", extra=extra), source=source).status == 200
    for request_id, (_, _, client) in cases.items():
        assert stack.access_record(request_id)["client"] == client, request_id


def test_behind_a_trusted_proxy_each_client_has_its_own_cap(stack):
    def partial_request(client: str) -> bytes:  # its head whole, its body not yet
        return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                b"X-Forwarded-For: %s\r\nContent-Length: 10\r\n\r\n" % client.encode())

    held = [connect(stack.port, PROXY) for _ in range(CAP)]
    try:
        for sock in held:
            sock.sendall(partial_request("203.0.113.7"))
        time.sleep(0.3)
        refused = exchange(stack, chat_request("one too many", extra=b"X-Forwarded-For: 203.0.113.7\r\n"),
                           source=PROXY)
        assert refused.status == 429 and refused.json()["error"]["code"] == "too_many_connections"
        other = exchange(stack, chat_request("someone else", extra=b"X-Forwarded-For: 203.0.113.8\r\n"),
                         source=PROXY)
        assert other.status == 200
    finally:
        for sock in held:
            sock.close()


# -- writing --------------------------------------------------------------------------------
def test_a_client_that_stops_reading_does_not_hold_a_thread(stack):
    """RESPONSE_WRITE_TIMEOUT is 1 s here: an answer larger than the socket buffers, never read."""
    with connect(stack.port, receive_buffer=4096) as sock:
        sock.sendall(chat_request("[[sandbox words=1000000]] longword", extra=b"X-Request-Id: unread\r\n",
                                  model="gpt"))
        record = stack.access_record("unread", timeout=30)
        assert record["status"] == 200
        # The access record is written as the app's answer closes; the web worker logs the
        # timed-out write just after, so the line is looked for until it shows.
        wait_for(lambda: "client stopped reading its response" in stack.web.log(), timeout=10,
                 message="the web worker to log the client that stopped reading")
    assert exchange(stack, chat_request("still serving")).status == 200


# -- gunicorn's own log lines ---------------------------------------------------------------
def test_gunicorns_log_lines_follow_log_format(stack):
    lines = stack.web.log().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    gunicorn = [r for r in records if r["logger"] == "gunicorn.error"]
    messages = [r["message"] for r in gunicorn]
    assert any(m.startswith("Starting gunicorn") for m in messages)
    assert any(m.startswith("Booting worker with pid") for m in messages)
    dump = next(m for m in messages if m.startswith("Current configuration"))  # LOG_LEVEL=debug
    assert "worker_class: api.web_worker.GatewayThreadWorker" in dump
    assert not [line for line in lines if line.startswith("[20")]  # gunicorn's own format: "[2026-12-07 ..."
