"""The worker's reader of HTTP response headers gives what http.client's email-based one gives."""

from __future__ import annotations

import email.parser
import http.client
import io

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


def test_installed_for_every_response_once_the_upstream_client_is_loaded():
    import workers.upstream  # noqa: F401

    assert http.client.parse_headers is http_headers.parse_headers
