"""The gunicorn internals the web worker relies on (api.gunicorn_patches, api.web_worker),
checked against the installed gunicorn: each test fails if an upgrade changes one."""

from __future__ import annotations

import inspect
import io
import json
import socket

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.errors import (
    ChunkMissingTerminator,
    InvalidChunkSize,
    InvalidRequestLine,
    LimitRequestHeaders,
    LimitRequestLine,
)
from gunicorn.workers.base import Worker
from gunicorn.workers.gthread import TConn, ThreadWorker

from api import gunicorn_patches
from api.gunicorn_patches import BufferedRequest, already_continued, buffered_parser, read_chunked_body

PEER = ("198.51.100.4", 40000)


@pytest.fixture
def no_server_header(monkeypatch):
    monkeypatch.setattr(wsgi.Response, "default_headers", wsgi.Response.default_headers)  # put back after
    gunicorn_patches.install_no_server_header()


@pytest.fixture
def json_errors(monkeypatch):
    monkeypatch.setattr(util, "write_error", util.write_error)  # put back after the test
    gunicorn_patches.install_json_errors()


class _Log:
    def warning(self, *args):
        pass

    exception = debug = access = warning


def handle_error(exc: Exception) -> tuple[bytes, dict]:
    """What gunicorn's Worker.handle_error writes for ``exc``: (head, JSON body)."""
    worker = Worker.__new__(Worker)
    worker.log, worker.cfg = _Log(), Config()
    ours, theirs = socket.socketpair()
    with ours, theirs:
        Worker.handle_error(worker, None, ours, PEER, exc)
        ours.close()
        data = b""
        while chunk := theirs.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, json.loads(body)


@pytest.mark.parametrize(("exc", "status", "code"), [
    (InvalidRequestLine("GARBAGE"), 400, "invalid_request"),
    (LimitRequestLine(5000, 4094), 414, "request_line_too_long"),
    (LimitRequestHeaders("limit request headers fields size"), 431, "header_fields_too_large"),
])
def test_gunicorns_refusals_are_json(json_errors, exc, status, code) -> None:
    head, body = handle_error(exc)
    assert head.startswith(b"HTTP/1.1 %d " % status)
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    assert body["error"]["code"] == code
    assert body["error"]["type"] == "invalid_request_error"
    assert set(body["error"]) == {"message", "type", "param", "code"}


def test_an_unexpected_error_is_a_bare_500(json_errors) -> None:
    head, body = handle_error(RuntimeError("secret internals at /srv/app.py line 12"))
    assert head.startswith(b"HTTP/1.1 500 ")
    assert body["error"]["code"] == "internal_error"
    assert "secret" not in json.dumps(body)


def test_the_parser_reads_the_buffered_request_and_never_past_it() -> None:
    source = BufferedRequest()
    parser = buffered_parser(Config(), source, PEER)
    source.load(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    request = next(parser)
    assert (request.method, request.path) == ("POST", "/x")
    assert request.body.read() == b"hello"
    assert source.unread_bytes == 0 and not source.overread
    # keep-alive: the next request, on the same parser
    source.load(b"GET /y HTTP/1.1\r\n\r\n")
    assert next(parser).path == "/y"
    assert source.unread_bytes == 0 and not source.overread


def test_a_truncated_request_reads_as_its_end_and_is_noticed() -> None:
    source = BufferedRequest()
    parser = buffered_parser(Config(), source, PEER)
    source.load(b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nhel")
    assert next(parser).body.read() == b"hel"
    assert source.overread


def test_what_the_parser_leaves_unread_is_counted() -> None:
    source = BufferedRequest()
    parser = buffered_parser(Config(), source, PEER)
    source.load(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n")
    assert next(parser).body.read() == b"hello"
    assert source.unread_bytes == len(b"GET / HTTP/1.1\r\n\r\n")


def test_a_large_body_is_read_in_the_sizes_a_socket_would_give() -> None:
    source = BufferedRequest()
    source.load(b"x" * (3 * 1024 * 1024))
    assert len(source.chunk()) == 8192
    assert len(source.chunk(5 * 1024 * 1024)) == 1024 * 1024


def test_gthreads_connection_keeps_a_parser_set_beforehand() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        conn = TConn(Config(), ours, PEER, ("127.0.0.1", 8080))
        parser = buffered_parser(Config(), BufferedRequest(), PEER)
        conn.parser = parser
        conn.init()
        assert conn.parser is parser and conn.initialized


def test_continue_is_not_sent_twice() -> None:
    source = BufferedRequest()
    parser = buffered_parser(Config(), source, PEER)
    source.load(b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi")
    request = next(parser)
    assert request._expected_100_continue is True  # what gunicorn answers "100 Continue" to
    already_continued(request)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        wsgi.create(request, ours, PEER, ("127.0.0.1", 8080), Config())
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(100)  # nothing was written


def test_a_chunked_body_is_read_by_gunicorn_before_the_app() -> None:
    source = BufferedRequest()
    parser = buffered_parser(Config(), source, PEER)
    source.load(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    request = next(parser)
    read_chunked_body(request)
    assert isinstance(request.body, io.BytesIO) and request.body.read() == b"abcde"
    assert source.unread_bytes == 0


@pytest.mark.parametrize(("data", "error"), [
    (b"zz\r\nabc\r\n0\r\n\r\n", InvalidChunkSize),
    (b"3\r\nabc\r\n", ChunkMissingTerminator),  # cut short where the event loop found it malformed
])
def test_a_malformed_chunked_body_is_gunicorns_error(data, error) -> None:
    source = BufferedRequest()
    parser = buffered_parser(Config(), source, PEER)
    source.load(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + data)
    request = next(parser)
    with pytest.raises(error):
        read_chunked_body(request)


def test_gthread_methods_the_worker_overrides_or_calls() -> None:
    expected = {
        "accept": ["self", "listener"],
        "finish_request": ["self", "conn", "fs"],
        "enqueue_req": ["self", "conn"],
        "handle_request": ["self", "req", "conn"],
        "murder_pending": ["self"],
        "murder_keepalived": ["self", "force"],
        "set_accept_enabled": ["self", "enabled"],
        "get_thread_pool": ["self"],
    }
    for name, parameters in expected.items():
        assert list(inspect.signature(getattr(ThreadWorker, name)).parameters) == parameters, name
    run = inspect.getsource(ThreadWorker.run)
    # Deadlines are checked in these hooks, after every turn of the loop and while stopping.
    assert run.count("self.murder_pending()") == 2 and "self.murder_keepalived(force=True)" in run
    assert "self.nr_conns < self.worker_connections" in run
    handle = inspect.getsource(ThreadWorker.handle)
    assert "if not conn.initialized and not conn.data_ready:" in handle  # no waiting for data in a thread
    assert "self.handle_request(req, conn)" in handle
    assert "util.write_error(" in inspect.getsource(Worker.handle_error)


def response_head(method: bytes = b"GET") -> bytes:
    """What gunicorn writes before a 200 response's body, as a gthread worker's Response does."""
    source = BufferedRequest()
    source.load(method + b" / HTTP/1.1\r\nHost: gateway\r\n\r\n")
    request = next(buffered_parser(Config(), source, PEER))
    ours, theirs = socket.socketpair()
    with ours, theirs:
        response, _environ = wsgi.create(request, ours, PEER, ("127.0.0.1", 8080), Config())
        response.start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        response.send_headers()
        ours.close()
        data = b""
        while chunk := theirs.recv(65536):
            data += chunk
    return data


def test_gunicorn_names_itself_in_every_response_head() -> None:
    # The line the patch removes, where it removes it: the second of Response.default_headers.
    head = response_head()
    assert head.split(b"\r\n")[1] == b"Server: gunicorn"
    assert '"Server: %s\\r\\n" % self.version' in inspect.getsource(wsgi.Response.default_headers)


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_no_response_says_what_serves_it(no_server_header, method) -> None:
    head = response_head(method)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert not any(line.lower().startswith(b"server:") for line in lines)
    assert b"gunicorn" not in head.lower()
    assert lines[1].startswith(b"Date: ") and b"Connection: keep-alive" in lines  # the rest as gunicorn writes it
