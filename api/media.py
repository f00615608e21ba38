"""JSON media handling with a cap on the body size and on its nesting.

Neither Falcon nor gunicorn limits request bodies. ``Content-Length`` is checked
up front by the middleware; a chunked body has none, so the handler stops
reading one byte past the cap instead of buffering whatever a client sends.

A body is also refused when its arrays and objects nest deeper than
``MAX_DEPTH``, checked once, as it is parsed, so nothing deeper reaches code
that recurses: orjson writes the job at most 254 levels deep (deeper raises),
and the worker's translations recurse in Python. No real request comes near it:
a tool's JSON Schema inside a request is a dozen levels deep.
"""

from __future__ import annotations

import falcon
import orjson
from falcon import media

from shared.errors import InvalidRequest, PayloadTooLarge

MAX_DEPTH = 64
_CONTAINERS = (dict, list)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds the gateway's limit of {limit} bytes.",
                           headers={"Connection": "close"})


def too_deep() -> InvalidRequest:
    return InvalidRequest(f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep.")


def nests_deeper(value, limit: int, raw: bytes | None = None) -> bool:
    """Whether ``value`` (parsed JSON) holds arrays and objects more than ``limit`` levels deep.

    ``raw``, the text it was parsed from, answers at once for most requests: a value with no
    more opening brackets than ``limit`` cannot nest deeper. Otherwise the value is walked
    depth first, without recursion, and the walk stops at the first path that is too deep."""
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    if not isinstance(value, _CONTAINERS):
        return False
    path = [iter(value.values() if type(value) is dict else value)]
    while path:
        for item in path[-1]:
            kind = type(item)
            if kind is dict or kind is list:
                if len(path) >= limit:
                    return True
                path.append(iter(item.values() if kind is dict else item))
                break
        else:
            path.pop()
    return False


def _parser_depth_exceeded(error: falcon.MediaMalformedError) -> bool:
    """orjson itself refuses more than 1024 levels, as malformed JSON: that too is a body nested
    too deep (tests/unit/test_media.py holds the message this relies on)."""
    cause = error.__cause__
    return isinstance(cause, orjson.JSONDecodeError) and cause.msg.startswith("depth limit exceeded")


class BoundedJSONHandler(media.JSONHandler):
    exhaust_stream = False  # draining an oversized body is what the cap avoids

    def __init__(self, max_bytes: int):
        super().__init__(dumps=orjson.dumps, loads=orjson.loads)
        self.max_bytes = max_bytes

    def deserialize(self, stream, content_type, content_length):
        data = stream.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise too_large(self.max_bytes)
        try:
            value = self._deserialize(data)
        except falcon.MediaMalformedError as error:
            if _parser_depth_exceeded(error):
                raise too_deep() from None
            raise
        if nests_deeper(value, MAX_DEPTH, data):
            raise too_deep()
        return value


def handlers(max_bytes: int) -> falcon.media.Handlers:
    return falcon.media.Handlers({falcon.MEDIA_JSON: BoundedJSONHandler(max_bytes)})
