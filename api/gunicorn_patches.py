"""The gunicorn internals the web worker relies on, each in one place, each checked by
``tests/unit/test_gunicorn_patches.py`` against the installed gunicorn.

- gunicorn writes its own refusals (400 bad request line or header, 414, 431, 417,
  501, 500) as HTML through ``gunicorn.util.write_error``, whose only caller is
  ``Worker.handle_error``; ``install_json_errors`` makes that function write our
  JSON error body instead, so gunicorn still decides the status and the message.
- ``buffered_parser`` gives gunicorn's HTTP/1 parser bytes the event loop buffered
  instead of the socket: the parser keeps its source in ``unreader``, whose
  ``chunk()`` is the only method that reads, and gthread's ``TConn.init`` leaves a
  parser set beforehand alone.
- ``read_chunked_body``: a chunked body read whole by gunicorn's own chunked reader
  (``Body.reader``), so a malformed one is gunicorn's 400 before the app runs, not
  an exception inside the app; the app then reads the same bytes from memory.
- ``already_continued``: gunicorn answers ``Expect: 100-continue`` when it builds the
  environ (``Request._expected_100_continue``); the event loop has done it already.
- ``install_no_server_header``: gunicorn starts every response's head with
  ``Server: gunicorn`` (``gunicorn.http.wsgi.Response.default_headers``, no setting turns
  it off); the gateway's responses say nothing about what serves them.
"""

from __future__ import annotations

import io

from gunicorn import util
from gunicorn.http.body import ChunkedReader
from gunicorn.http.errors import ChunkMissingTerminator, NoMoreData
from gunicorn.http.parser import RequestParser
from gunicorn.http.unreader import Unreader
from gunicorn.http.wsgi import Response

from api import edge_responses

_SOCKET_CHUNK = 8192  # gunicorn.http.unreader.SocketUnreader: a read without a size hint
_LARGEST_CHUNK = 1024 * 1024  # SocketUnreader.max_body_chunk


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error`` with the same arguments, writing our JSON error."""
    error = edge_responses.gunicorn_refusal(status_int, reason, mesg)
    wire, request_id = edge_responses.refusal_format()
    util.write_nonblock(sock, edge_responses.response(error, wire=wire, request_id_sent=request_id))


def install_json_errors() -> None:
    util.write_error = write_json_error


_gunicorn_default_headers = Response.default_headers


def default_headers_without_server(response: Response) -> list[str]:
    """gunicorn's status line and default header lines, but its ``Server:`` line."""
    return [line for line in _gunicorn_default_headers(response) if not line.startswith("Server:")]


def install_no_server_header() -> None:
    Response.default_headers = default_headers_without_server


class BufferedRequest(Unreader):
    """The source gunicorn's parser reads a request from: bytes already received, never
    the socket. Asked for more than it holds, it answers end-of-file and remembers it."""

    def __init__(self):
        super().__init__()
        self._data = memoryview(b"")
        self._position = 0
        self.overread = False  # the parser wanted more than the request the event loop framed

    def load(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._position = 0
        self.overread = False

    @property
    def unread_bytes(self) -> int:
        """What the parser has not consumed of the loaded request (read-ahead included)."""
        return len(self._data) - self._position + self.buf.seek(0, io.SEEK_END)

    def chunk(self, size_hint=None):
        # As SocketUnreader sizes its reads, so the parser's buffers behave as with a socket.
        size = _SOCKET_CHUNK
        if size_hint and size_hint > size:
            size = min(size_hint, _LARGEST_CHUNK)
        start = self._position
        if start >= len(self._data):
            self.overread = True
            return b""
        self._position = min(start + size, len(self._data))
        return bytes(self._data[start:self._position])


def buffered_parser(cfg, source: BufferedRequest, client) -> RequestParser:
    parser = RequestParser(cfg, [], client)
    parser.unreader = source
    return parser


def already_continued(req) -> None:
    """The client has been sent ``100 Continue`` (or sent its body without waiting)."""
    req._expected_100_continue = False


def read_chunked_body(req) -> None:
    """Read ``req``'s chunked body now (it is in memory); raises gunicorn's parse errors.
    A body that ends before its framing does was cut short where the event loop found it
    malformed: gunicorn's error for a truncated chunked body, not a client gone."""
    body = req.body
    if body is not None and isinstance(getattr(body, "reader", None), ChunkedReader):
        try:
            req.body = io.BytesIO(body.read())
        except NoMoreData:
            raise ChunkMissingTerminator(b"") from None
