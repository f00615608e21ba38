"""JSON media handling with a cap on the body size.

Neither Falcon nor gunicorn limits request bodies. ``Content-Length`` is checked
up front by the middleware; a chunked body has none, so the handler stops
reading one byte past the cap instead of buffering whatever a client sends.
"""

from __future__ import annotations

import falcon
import orjson
from falcon import media

from shared.errors import PayloadTooLarge


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body exceeds the gateway's limit of {limit} bytes.",
                           headers={"Connection": "close"})


class BoundedJSONHandler(media.JSONHandler):
    exhaust_stream = False  # draining an oversized body is what the cap avoids

    def __init__(self, max_bytes: int):
        super().__init__(dumps=orjson.dumps, loads=orjson.loads)
        self.max_bytes = max_bytes

    def deserialize(self, stream, content_type, content_length):
        data = stream.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise too_large(self.max_bytes)
        return self._deserialize(data)


def handlers(max_bytes: int) -> falcon.media.Handlers:
    return falcon.media.Handlers({falcon.MEDIA_JSON: BoundedJSONHandler(max_bytes)})
