"""Where a request ends, found as its bytes arrive, so a whole request can be
buffered before any thread is given to it (``api.web_worker``).

``RequestFramer`` is fed the bytes of a connection as they come and finds the
head (request line and header fields), then the body: ``Content-Length`` bytes,
or chunks up to the last chunk and its trailer section. It reads just enough of
the head to frame the request and to decide about it early (its target, the
client's ``X-Forwarded-For``, ``Expect: 100-continue``); it validates nothing
else. gunicorn's parser, which reads the buffered request afterwards, does.

When the framing is ambiguous or malformed (two lengths, a length and chunked,
an unknown transfer coding, a bad chunk size, a head over gunicorn's limits) the
framer does not guess: it says ``UNFRAMED``, the bytes it holds go to gunicorn's
parser as they are, gunicorn refuses them (400, 414, 431, 501), and the
connection is closed. The parser only ever reads bytes buffered here, never the
socket, so a disagreement can cost a request its answer, not desynchronise the
connection.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

# gunicorn's own defaults and ceilings for the head (gunicorn.http.message).
MAX_REQUEST_LINE = 8190
MAX_HEADERS = 32768
DEFAULT_FIELD_SIZE = 8190

_TRANSFER_CODINGS_BEFORE_CHUNKED = frozenset({b"identity", b"gzip", b"deflate", b"compress"})
_FIELDS = re.compile(rb"\r\n(content-length|transfer-encoding|expect|x-forwarded-for|x-request-id|"
                     rb"anthropic-version):[ \t]*([^\r\n]*)", re.IGNORECASE)
_HEX = re.compile(rb"[0-9A-Fa-f]+")


class Framing(enum.Enum):
    NEED_MORE = "need more bytes"
    HEAD = "the head is complete (feed b'' to go on with the body)"
    COMPLETE = "the request is complete"
    UNFRAMED = "the framing is ambiguous or malformed: hand over what is held, then close"
    TOO_LARGE = "the body is over the limit"


@dataclass(frozen=True)
class Limits:
    """gunicorn's limits on the head (its ``limit_request_*`` settings), and ``MAX_BODY_BYTES``."""

    request_line: int = 4094  # 0: unlimited, as in gunicorn (then up to 1 MiB here)
    fields: int = 100
    field_size: int = DEFAULT_FIELD_SIZE
    max_body: int = 10 * 1024 * 1024

    @classmethod
    def from_gunicorn(cls, cfg, max_body: int) -> Limits:
        """The limits gunicorn's parser applies with ``cfg`` (gunicorn.http.message.Request)."""
        line = cfg.limit_request_line
        line = MAX_REQUEST_LINE if line < 0 or line >= MAX_REQUEST_LINE else line
        fields = cfg.limit_request_fields
        fields = MAX_HEADERS if fields <= 0 or fields > MAX_HEADERS else fields
        size = cfg.limit_request_field_size
        size = DEFAULT_FIELD_SIZE if size <= 0 else size
        return cls(request_line=line, fields=fields, field_size=size, max_body=max_body)

    @property
    def header_bytes(self) -> int:
        """gunicorn's ``max_buffer_headers``: the most it reads after the request line."""
        return self.fields * (self.field_size + 2) + 4

    @property
    def line_bytes(self) -> int:
        return self.request_line or 1024 * 1024


class Head:
    """What the worker decides on before the body: a plain class, made for every request."""

    __slots__ = ("method", "target", "version", "content_length", "chunked", "expects_continue",
                 "forwarded_for", "request_id", "anthropic_version", "malformed")

    def __init__(self, method: bytes, target: bytes, version: bytes):
        self.method = method
        self.target = target
        self.version = version
        self.content_length: int | None = None
        self.chunked = False
        self.expects_continue = False
        self.forwarded_for: str | None = None  # every X-Forwarded-For value, joined with commas
        self.request_id: str | None = None
        self.anthropic_version = False
        self.malformed = False  # its framing is ambiguous or malformed: gunicorn refuses the request

    @property
    def path(self) -> str:
        return self.target.partition(b"?")[0].decode("latin-1")


# Body states
_NO_BODY, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(6)


class RequestFramer:
    """One request's bytes. Feed it what the socket gives; ``request_bytes()`` then
    holds the request exactly, ``leftover`` what the client sent after it (pipelining)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.head: Head | None = None
        self.refused_head: Head | None = None  # a head whose framing gunicorn will refuse
        self.body_received = 0  # body bytes framed so far (chunk payloads, for a chunked body)
        self.leftover = b""
        self._head: bytes | bytearray = b""  # the head as received; once complete, exactly the head
        self._searched = 0  # how far an incomplete head has been searched for its end and for bare LFs
        self._pieces: list[bytes] = []  # the request's bytes after its head, as received
        self._pending = b""  # bytes fed with the head's end, framed once the caller has seen the head
        self._state = _NO_BODY
        self._remaining = 0  # of the body (_LENGTH) or of the current chunk (_CHUNK_DATA)
        self._line = bytearray()  # a chunk-size line or the trailer section, as far as received
        self._outcome = Framing.NEED_MORE

    @property
    def started(self) -> bool:
        """Whether any byte of a request has arrived (a blank line before it does not count)."""
        return self.head is not None or bool(self._head.strip(b"\r\n"))

    def feed(self, data: bytes) -> Framing:
        outcome = self._outcome
        if outcome is Framing.NEED_MORE and self.head is None:
            if self._head:
                self._head += data  # a bytearray once the head takes more than one piece
                outcome = self._find_head(self._head)
            else:
                outcome = self._find_head(data)  # most heads come whole: no copy until framed
                if outcome is not Framing.HEAD:
                    self._head = bytearray(data)
        elif outcome is Framing.HEAD:
            data, self._pending = self._pending + data, b""
            outcome = self._frame_body(data)
        elif outcome is Framing.NEED_MORE:
            outcome = self._frame_body(data)
        else:
            raise RuntimeError(f"framing already ended: {outcome.name}")
        self._outcome = outcome
        return outcome

    @property
    def body_started(self) -> bool:
        """Whether any byte after the head has arrived."""
        return bool(self._pending or self._pieces)

    def request_bytes(self) -> bytes:
        """Everything the request sent (its head, and its body once complete)."""
        if not self._pieces:
            return bytes(self._head)
        return b"".join([self._head, *self._pieces])

    def head_only(self) -> bytes:
        """Just the head: for a request refused on its head alone, whose body is never read."""
        return bytes(self._head) if self.head is not None else self.request_bytes()

    # -- the head ------------------------------------------------------------
    def _find_head(self, data: bytes | bytearray) -> Framing:
        start = 2 if data.startswith(b"\r\n") else 0  # one blank line before the request line is allowed
        if data.startswith(b"\r\n", start):
            return Framing.UNFRAMED  # an empty request line
        line_end = data.find(b"\r\n", start)
        if line_end < 0:
            return self._incomplete(data, start, start)
        if line_end - start > self.limits.line_bytes:
            return Framing.UNFRAMED  # over the request line's limit: gunicorn answers 414
        end = data.find(b"\r\n\r\n", max(line_end, self._searched - 3))
        if end < 0:
            return self._incomplete(data, start, line_end)
        head_end = end + 4
        if data.find(b"\r\n ", line_end, head_end) >= 0 or data.find(b"\r\n\t", line_end, head_end) >= 0:
            return Framing.UNFRAMED  # obsolete line folding: gunicorn refuses it
        head = self._read_head(data, start, line_end, end)
        if head is None:
            return Framing.UNFRAMED
        if head.malformed:
            self.refused_head = head  # what gunicorn's refusal needs: the endpoint and request id
            return Framing.UNFRAMED
        self.head = head
        if head.chunked:
            self._state = _CHUNK_SIZE
        elif head.content_length:
            self._state = _LENGTH
            self._remaining = head.content_length
        self._pending = bytes(data[head_end:])
        self._head = bytes(data[:head_end])
        return Framing.HEAD

    def _incomplete(self, data: bytes | bytearray, start: int, line_end: int) -> Framing:
        # A bare LF: gunicorn refuses the head at once, without waiting for its end. Only the
        # bytes not searched yet are counted; the first may be the LF of a CR searched already.
        since = max(start, self._searched)
        bare = data.count(b"\n", since) - data.count(b"\r\n", since)
        if bare and since > start and data[since - 1:since + 1] == b"\r\n":
            bare -= 1
        if bare:
            return Framing.UNFRAMED
        self._searched = len(data)
        if line_end == start:  # the request line has not ended
            if len(data) - start > self.limits.line_bytes + 2:
                return Framing.UNFRAMED  # over the request line's limit: gunicorn answers 414
        elif len(data) - line_end - 2 > self.limits.header_bytes:
            return Framing.UNFRAMED  # over gunicorn's limit on header fields: 431
        return Framing.NEED_MORE

    def _read_head(self, data: bytes | bytearray, start: int, line_end: int, fields_end: int) -> Head | None:
        parts = data[start:line_end].split(b" ")
        if len(parts) != 3:
            return None
        head = Head(method=bytes(parts[0]), target=bytes(parts[1]), version=bytes(parts[2]))
        lengths: list[bytes] = []
        codings: list[bytes] = []
        forwarded: list[str] = []
        for match in _FIELDS.finditer(data, line_end, fields_end):
            name = match.group(1).lower()
            value = match.group(2).rstrip(b" \t")
            if name == b"content-length":
                lengths.append(value)
            elif name == b"transfer-encoding":
                codings += [coding.strip(b" \t").lower() for coding in value.split(b",")]
            elif name == b"expect":
                head.expects_continue = value.lower() == b"100-continue" and head.version != b"HTTP/1.0"
            elif name == b"x-forwarded-for":
                forwarded.append(bytes(value).decode("latin-1"))
            elif name == b"x-request-id":
                head.request_id = head.request_id or bytes(value).decode("latin-1")
            else:
                head.anthropic_version = True
        if forwarded:
            head.forwarded_for = ",".join(forwarded)
        if codings:
            if lengths or codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
                head.malformed = True
            elif not set(codings[:-1]) <= _TRANSFER_CODINGS_BEFORE_CHUNKED or head.version != b"HTTP/1.1":
                head.malformed = True
            else:
                head.chunked = True
        elif lengths:
            if len(lengths) != 1 or not lengths[0].isdigit():  # bytes.isdigit: ASCII digits only
                head.malformed = True
            else:
                head.content_length = int(lengths[0])
        return head

    # -- the body ------------------------------------------------------------
    def _frame_body(self, data: bytes) -> Framing:
        outcome, position = self._frame(data)
        if outcome is Framing.COMPLETE:
            self.leftover = data[position:]
        elif outcome is Framing.UNFRAMED and position < len(data):
            self._pieces.append(data[position:])  # gunicorn's parser says what is wrong: give it all there is
        return outcome

    def _frame(self, data: bytes) -> tuple[Framing, int]:
        """Frame ``data``; return the outcome and how much of ``data`` the request took."""
        position = 0
        size = len(data)
        while True:
            state = self._state
            if state == _NO_BODY:
                return Framing.COMPLETE, position
            if state == _LENGTH or state == _CHUNK_DATA:
                if self.head.content_length is not None and self.head.content_length > self.limits.max_body:
                    return Framing.TOO_LARGE, position
                take = min(self._remaining, size - position)
                if take:
                    self._pieces.append(data[position:position + take] if take < size else data)
                    position += take
                    self._remaining -= take
                    if state == _LENGTH:
                        self.body_received += take
                if self._remaining:
                    return Framing.NEED_MORE, position
                if state == _LENGTH:
                    self._state = _NO_BODY
                else:
                    self._state = _CHUNK_END
                    self._line.clear()
                continue
            # The chunk framing: size lines, the CRLF after each chunk, the trailer section.
            if position >= size:
                return Framing.NEED_MORE, position
            if state == _CHUNK_END:
                need = 2 - len(self._line)
                piece = data[position:position + need]
                self._line += piece
                self._pieces.append(piece)
                position += len(piece)
                if len(self._line) < 2:
                    return Framing.NEED_MORE, position
                if self._line != b"\r\n":
                    return Framing.UNFRAMED, position
                self._state = _CHUNK_SIZE
                self._line.clear()
                continue
            if state == _CHUNK_SIZE:
                end = data.find(b"\n", position)
                stop = size if end < 0 else end + 1
                self._line += data[position:stop]
                self._pieces.append(data[position:stop])
                position = stop
                if end < 0:
                    if len(self._line) > self.limits.field_size:
                        return Framing.UNFRAMED, position
                    return Framing.NEED_MORE, position
                outcome = self._chunk_size()
                if outcome is not None:
                    return outcome, position
                continue
            # _TRAILERS: up to and including the empty line that ends the section
            end = data.find(b"\n", position)
            stop = size if end < 0 else end + 1
            self._line += data[position:stop]
            self._pieces.append(data[position:stop])
            position = stop
            if len(self._line) > self.limits.header_bytes:
                return Framing.UNFRAMED, position
            if end < 0:
                return Framing.NEED_MORE, position
            if not self._line.endswith(b"\r\n"):
                return Framing.UNFRAMED, position  # a bare LF
            if self._line == b"\r\n" or self._line.endswith(b"\r\n\r\n"):
                self._state = _NO_BODY

    def _chunk_size(self) -> Framing | None:
        line = bytes(self._line)
        self._line.clear()
        if not line.endswith(b"\r\n"):
            return Framing.UNFRAMED  # a bare LF
        digits, semicolon, _extension = line[:-2].partition(b";")
        if semicolon:
            digits = digits.rstrip(b" \t")
        if not _HEX.fullmatch(digits):
            return Framing.UNFRAMED
        chunk = int(digits, 16)
        self.body_received += chunk
        if self.body_received > self.limits.max_body:
            return Framing.TOO_LARGE
        if chunk == 0:
            self._state = _TRAILERS
        else:
            self._state = _CHUNK_DATA
            self._remaining = chunk
        return None
