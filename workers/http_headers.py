"""A faster reader of HTTP response headers for ``http.client`` (which urllib3 and
so requests use) in the worker processes.

``http.client.parse_headers`` hands the header block to the ``email`` package's
feed parser: a deep stack of pure-Python code run on every provider answer, and
slow above all when it has left the CPU's caches, as it has after the seconds an
LLM takes to answer (about 0.2 ms per answer on the development machines).
Header blocks of plain ``Name: value`` lines, which is what providers send, are
read here into the same ``HTTPMessage`` the email parser makes; anything else
(folded lines, malformed ones) still goes to the email parser.
"""

from __future__ import annotations

import email.parser
import http.client
import re

# RFC 9110 field name (a token) and colon; the email parser reads such lines as we do.
_FIELD = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([^\r\n]*)\r?\n\Z")


def parse_headers(fp, _class=http.client.HTTPMessage):
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


def install() -> None:
    """``http.client`` looks ``parse_headers`` up at every response. Its line reader is
    private: on a Python without it, the standard parser stays."""
    if callable(getattr(http.client, "_read_headers", None)):
        http.client.parse_headers = parse_headers
