"""The worker's reader of HTTP response headers gives what http.client's email-based one gives, and
only the gateway's provider connections use it."""

from __future__ import annotations

import email.parser
import http.client
import http.server
import io
import threading

import pytest

from workers import http_headers

BLOCKS = [
    b"Content-Type: application/json\r\nContent-Length: 12\r\nX-Two: a\r\nX-Two: b\r\n\r\n",
    b"Server:  spaced   \r\nEmpty:\r\nTab:\tv\r\n\r\n",  # spaces kept as the email parser keeps them
    b"Only: lf\n\n",
    b"Latin: caf\xe9\r\n\r\n",
    b"\r\n",
    b"Fold: a\r\n b\r\nX: y\r\n\r\n",  # obsolete line folding: the email parser's
    b"Bad Header: x\r\nOk: y\r\n\r\n",  # not a field name: the email parser's (and its defect)
    b"Odd: a\rb\r\n\r\n",  # a bare CR, which the email parser takes as a line end
    b"Unterminated: x\r\n",  # the stream ended inside the headers
]


def email_parsed(block: bytes) -> http.client.HTTPMessage:
    lines = http.client._read_headers(io.BytesIO(block))
    return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(b"".join(lines).decode("iso-8859-1"))


@pytest.mark.parametrize("block", BLOCKS)
def test_the_same_message_as_the_email_parser(block):
    ours, theirs = http_headers.parse_headers(io.BytesIO(block + b"BODY")), email_parsed(block + b"BODY")
    assert type(ours) is http.client.HTTPMessage
    assert list(ours.items()) == list(theirs.items())
    assert [type(d) for d in ours.defects] == [type(d) for d in theirs.defects]
    assert ours.get_payload() == theirs.get_payload()


def test_what_follows_the_headers_is_left_for_the_body():
    fp = io.BytesIO(b"A: 1\r\n\r\nBODY")
    http_headers.parse_headers(fp)
    assert fp.read() == b"BODY"


def test_http_client_limits_still_apply():
    with pytest.raises(http.client.LineTooLong):
        http_headers.parse_headers(io.BytesIO(b"A: " + b"x" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException):
        http_headers.parse_headers(io.BytesIO(b"".join(b"H%d: v\r\n" % i for i in range(200)) + b"\r\n"))


def test_http_client_still_reads_headers_through_the_name_our_responses_redirect():
    # Fails if a Python upgrade changes how HTTPResponse.begin finds its header reader
    # (or drops the private line reader ours uses): the standard reader would then serve.
    assert http_headers.reads_headers_by_name(http.client.HTTPResponse.begin)
    ours = http_headers.ProviderResponse.begin
    assert ours is not http.client.HTTPResponse.begin
    assert ours.__code__ is http.client.HTTPResponse.begin.__code__
    assert ours.__globals__["parse_headers"] is http_headers.parse_headers


class _Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Two", "a")
        self.send_header("X-Two", "b")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_only_the_gateway_s_provider_connections_use_it(server, monkeypatch):
    import requests

    from workers.cancel import CancellableAdapter

    read_by_us = []

    def counting(fp, _class=http.client.HTTPMessage):
        read_by_us.append(1)
        return http_headers.parse_headers(fp, _class)

    monkeypatch.setitem(http_headers.ProviderResponse.begin.__globals__, "parse_headers", counting)
    stock = http.client.parse_headers
    provider = requests.Session()
    provider.mount("http://", CancellableAdapter())
    with provider:
        answer = provider.get(server, timeout=5)
    assert read_by_us == [1]
    assert answer.json() == {"ok": True} and answer.headers["X-Two"] == "a, b"
    assert type(answer.raw._original_response) is http_headers.ProviderResponse

    with requests.Session() as anyone_else:  # google-auth's token calls, say
        other = anyone_else.get(server, timeout=5)
    assert read_by_us == [1] and other.headers["X-Two"] == "a, b"
    assert type(other.raw._original_response) is http.client.HTTPResponse
    assert http.client.parse_headers is stock
