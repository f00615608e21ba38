"""A faster reader of HTTP response headers, for the gateway's own provider connections only.

``http.client`` (which urllib3, and so requests, use) reads every response's header
block with ``parse_headers``, which hands it to the ``email`` package's feed parser:
a deep stack of pure-Python code run on every provider answer, and slow above all
when it has left the CPU's caches, as it has after the seconds an LLM takes to
answer. Header blocks of plain ``Name: value`` lines, which is what providers send,
are read here into the same ``HTTPMessage`` the email parser makes; anything else
(folded lines, malformed ones) still goes to the email parser.

Nothing in the process is replaced: ``ProviderResponse`` is the response class of
the connections ``workers.cancel`` builds for provider calls (http.client's
``response_class`` hook), so other libraries (google-auth's token calls, redis,
anything else) keep ``http.client``'s own reader. Its ``begin`` is
``http.client.HTTPResponse.begin`` itself, the same code, run with ``parse_headers``
naming the reader here: ``begin`` finds ``parse_headers`` by name among its module's
globals. That, and ``http.client._read_headers``, are private to the standard
library; ``tests/unit/test_http_headers.py`` fails if a Python upgrade changes them,
and without them the standard reader is used.
"""

from __future__ import annotations

import email.parser
import http.client
import re
import types

# RFC 9110 field name (a token) and colon; the email parser reads such lines as we do.
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*)\r?\n\Z")


def parse_headers(fp, _class=http.client.HTTPMessage):
    """``http.client.parse_headers``, with the same arguments and result."""
    lines = http.client._read_headers(fp)  # http.client's own line and count limits
    message = _class()
    for line in lines[:-1]:  # the last is the empty line that ends the block
        field = _FIELD.match(line)
        if field is None:
            return email.parser.Parser(_class=_class).parsestr(b"".join(lines).decode("iso-8859-1"))
        message._headers.append((field[1].decode("ascii"), field[2].decode("iso-8859-1")))
    if lines and lines[-1] not in (b"\r\n", b"\n"):  # the block ended early (end of stream)
        return email.parser.Parser(_class=_class).parsestr(b"".join(lines).decode("iso-8859-1"))
    message.set_payload("")  # as the email parser leaves it: nothing after the headers
    return message


def reads_headers_by_name(function: types.FunctionType) -> bool:
    """Whether ``function`` (``HTTPResponse.begin``) reads headers through the global
    ``parse_headers``, with ``http.client``'s private line reader there for ours to use."""
    return ("parse_headers" in function.__code__.co_names and function.__closure__ is None
            and callable(getattr(http.client, "_read_headers", None)))


def _begin_with_our_reader(begin: types.FunctionType) -> types.FunctionType:
    # The module's namespace as it is now, with one name changed: what ``begin`` reads is
    # constants, classes and helper functions that http.client defines once.
    namespace = {**vars(http.client), "parse_headers": parse_headers}
    ours = types.FunctionType(begin.__code__, namespace, begin.__name__, begin.__defaults__, begin.__closure__)
    ours.__qualname__ = begin.__qualname__
    ours.__doc__ = begin.__doc__
    return ours


class ProviderResponse(http.client.HTTPResponse):
    """``http.client.HTTPResponse`` whose header block is read by ``parse_headers`` above."""

    if reads_headers_by_name(http.client.HTTPResponse.begin):
        begin = _begin_with_our_reader(http.client.HTTPResponse.begin)
