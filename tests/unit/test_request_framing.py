"""Where a request ends (api.request_framing), checked against gunicorn's own parser:
whatever the framer frames, gunicorn reads exactly, and what it will not frame,
gunicorn refuses."""

from __future__ import annotations

import pytest
from gunicorn.config import Config
from gunicorn.http.errors import ParseException
from gunicorn.http.parser import RequestParser

from api.request_framing import Framing, Limits, RequestFramer

LIMITS = Limits(max_body=1000)
JSON = b'{"model": "chat", "messages": [{"role": "user", "content": "hi\\nthere"}]}'


def post(body: bytes, *extra: bytes) -> bytes:
    fields = b"".join(field + b"\r\n" for field in extra)
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n" + fields
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def chunked(*chunks: bytes, trailers: bytes = b"", extension: bytes = b"") -> bytes:
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(c), extension, c) for c in chunks) + b"0\r\n" + trailers + b"\r\n"
    return b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" + body


def frame(data: bytes, *, step: int | None = None, limits: Limits = LIMITS) -> tuple[Framing, RequestFramer]:
    """Feed ``data`` whole, or ``step`` bytes at a time; go on past the head as the worker does."""
    framer = RequestFramer(limits)
    pieces = [data] if step is None else [data[i:i + step] for i in range(0, len(data), step)] or [b""]
    outcome = Framing.NEED_MORE
    for piece in pieces:
        outcome = framer.feed(piece)
        while outcome is Framing.HEAD:
            outcome = framer.feed(b"")
        if outcome is not Framing.NEED_MORE:
            break
    return outcome, framer


def gunicorn_reads(data: bytes) -> tuple[bytes, bytes]:
    """(the body gunicorn's parser reads from ``data``, what it leaves unread)."""
    parser = RequestParser(Config(), iter([data]), ("127.0.0.1", 1))
    request = next(parser)
    body = request.body.read()
    return body, parser.unreader.read()


@pytest.mark.parametrize("step", [None, 1, 2, 3, 7, 64])
@pytest.mark.parametrize("request_bytes", [
    b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n",
    b"\r\nGET /health HTTP/1.1\r\n\r\n",  # one blank line before the request line is allowed
    post(JSON),
    post(b""),
    chunked(JSON[:10], JSON[10:]),
    chunked(JSON, extension=b";name=value"),
    chunked(JSON, trailers=b"X-Checksum: abc\r\nX-Other: 1\r\n"),
    chunked(),
], ids=["get", "blank-line-first", "length", "empty-length", "chunked", "chunk-extension", "trailers",
        "no-chunks"])
def test_frames_exactly_what_gunicorn_reads(request_bytes: bytes, step: int | None) -> None:
    pipelined = b"GET /next HTTP/1.1\r\n\r\n"
    outcome, framer = frame(request_bytes + pipelined, step=step)
    assert outcome is Framing.COMPLETE
    framed = framer.request_bytes()
    assert framed == request_bytes
    assert pipelined.startswith(framer.leftover)  # the rest of the pipelined request comes later, if stepped
    body, unread = gunicorn_reads(framed)
    assert unread == b""
    if b"Transfer-Encoding" in request_bytes or b"Content-Length" in request_bytes:
        assert body in (JSON, b"")


def test_head_fields_the_worker_decides_on() -> None:
    outcome, framer = frame(post(JSON, b"X-Forwarded-For: 203.0.113.1, 10.0.0.1", b"x-forwarded-for: 10.0.0.2",
                                 b"X-Request-Id: abc-1", b"Expect: 100-continue", b"anthropic-version: 2023-06-01"))
    assert outcome is Framing.COMPLETE
    head = framer.head
    assert (head.method, head.path, head.content_length, head.chunked) == (b"POST", "/v1/chat/completions",
                                                                           len(JSON), False)
    assert head.forwarded_for == "203.0.113.1, 10.0.0.1,10.0.0.2"
    assert (head.request_id, head.expects_continue, head.anthropic_version) == ("abc-1", True, True)


def test_head_is_reported_before_the_body() -> None:
    framer = RequestFramer(LIMITS)
    data = post(JSON, b"Expect: 100-continue")
    head_end = data.index(b"\r\n\r\n") + 4
    assert framer.feed(data[:head_end]) is Framing.HEAD
    assert not framer.body_started
    assert framer.head.expects_continue
    assert framer.feed(b"") is Framing.NEED_MORE
    assert framer.feed(data[head_end:]) is Framing.COMPLETE


def test_expect_continue_is_ignored_for_http_1_0() -> None:
    _, framer = frame(post(JSON, b"Expect: 100-continue").replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert framer.head.expects_continue is False


def test_a_length_over_the_limit_is_known_from_the_head() -> None:
    framer = RequestFramer(LIMITS)
    assert framer.feed(b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n") is Framing.HEAD
    assert framer.head.content_length == 1001
    assert framer.head_only() == b"POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"
    assert framer.feed(b"") is Framing.TOO_LARGE


@pytest.mark.parametrize("sizes", [[1001], [600, 401], [500, 500, 1]])
def test_chunks_over_the_limit_are_too_large_at_once(sizes: list[int]) -> None:
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = head + b"".join(b"%x\r\n" % size + b"x" * size + b"\r\n" for size in sizes[:-1]) + b"%x\r\n" % sizes[-1]
    outcome, framer = frame(data)  # the last chunk's size line alone, no data yet
    assert outcome is Framing.TOO_LARGE
    assert framer.body_received > LIMITS.max_body


@pytest.mark.parametrize("request_bytes", [
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\nHost: gw\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: gw\r\n folded\r\n\r\n",
    b"\r\n\r\n",
    b"GARBAGE\r\n\r\n",
], ids=["two-lengths", "length-and-chunked", "signed-length", "gzip-only", "chunked-not-last", "chunked-twice",
        "chunked-http-1.0", "bad-chunk-size", "no-crlf-after-chunk", "bare-lf-in-chunk-size", "bare-lf-in-head",
        "obsolete-folding", "empty-request-line", "no-version"])
def test_what_it_will_not_frame_gunicorn_refuses(request_bytes: bytes) -> None:
    outcome, framer = frame(request_bytes)
    assert outcome is Framing.UNFRAMED
    with pytest.raises(ParseException):
        gunicorn_reads(framer.request_bytes())


def test_a_request_line_over_the_limit_is_handed_over_before_it_ends() -> None:
    limits = Limits(request_line=100, max_body=1000)
    assert RequestFramer(limits).feed(b"GET /" + b"a" * 90) is Framing.NEED_MORE
    assert RequestFramer(limits).feed(b"GET /" + b"a" * 200) is Framing.UNFRAMED


def test_a_head_over_the_fields_limit_is_handed_over_before_it_ends() -> None:
    limits = Limits(fields=4, field_size=100, max_body=1000)  # 4 * 102 + 4 bytes of fields at most
    framer = RequestFramer(limits)
    assert framer.feed(b"GET / HTTP/1.1\r\n") is Framing.NEED_MORE
    assert framer.feed(b"X-A: " + b"a" * 300 + b"\r\n") is Framing.NEED_MORE
    assert framer.feed(b"X-B: " + b"b" * 300 + b"\r\n") is Framing.UNFRAMED


def test_trailers_over_the_limit_are_handed_over() -> None:
    limits = Limits(fields=2, field_size=50, max_body=1000)
    outcome, _ = frame(chunked(b"abc", trailers=b"X-T: " + b"t" * 200 + b"\r\n"), limits=limits)
    assert outcome is Framing.UNFRAMED


def test_a_bare_lf_anywhere_in_the_head_is_seen_as_it_arrives() -> None:
    framer = RequestFramer(LIMITS)
    assert framer.feed(b"GET / HTTP/1.1\r\nHost: gw\r") is Framing.NEED_MORE
    assert framer.feed(b"\nX-A: 1\n") is Framing.UNFRAMED


def test_newlines_in_the_body_are_not_bare_lfs_in_the_head() -> None:
    outcome, _ = frame(post(b"a\nb\nc"))
    assert outcome is Framing.COMPLETE


def test_limits_follow_gunicorns_settings() -> None:
    cfg = Config()
    cfg.set("limit_request_line", 0)
    cfg.set("limit_request_fields", 50)
    cfg.set("limit_request_field_size", 0)
    limits = Limits.from_gunicorn(cfg, 123)
    assert (limits.request_line, limits.fields, limits.field_size, limits.max_body) == (0, 50, 8190, 123)
    assert limits.line_bytes == 1024 * 1024  # 0: unlimited in gunicorn
    assert limits.header_bytes == 50 * 8192 + 4


def test_started_ignores_blank_lines() -> None:
    framer = RequestFramer(LIMITS)
    framer.feed(b"\r\n")
    assert not framer.started
    framer.feed(b"G")
    assert framer.started
