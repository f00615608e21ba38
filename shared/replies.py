"""How a job's outcome travels back from a worker to the waiting API process.

Each job has a reply Redis Stream (``shared.keys.reply_stream_key``). The worker
appends entries; the API blocks on ``XREAD`` until they arrive, so there is no
polling and no race: an entry written before the reader attaches is still read.
Entry kinds:

- ``result`` (final): ``status`` and ``body``, the response JSON passed through as bytes.
- ``error`` (final): a ``GatewayError`` as a dict. Before any ``chunk`` it is an
  ordinary HTTP error; after one, the API ends the stream with an error event.
- ``chunk``: ``data``, bytes of server-sent events already framed in the
  client's wire format, relayed as they are. The first one commits the stream:
  only then does the API send its 200.
- ``end`` (final): the stream finished cleanly (its last chunk carried the end marker).

Final entries carry ``meta``: facts for the access log (when the job started,
attempts, usage). The stream expires on its own; the API deletes it when done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from redis import Redis

from shared.errors import GatewayError
from shared.keys import reply_stream_key

RESULT, ERROR, CHUNK, END = "result", "error", "chunk", "end"
FINAL_KINDS = (RESULT, ERROR, END)


class ClientGone(Exception):
    """The client disconnected while waiting for its answer."""


@dataclass
class Reply:
    kind: str
    status: int = 200
    body: bytes = b""  # a result's JSON, or a chunk's framed events
    error: GatewayError | None = None
    meta: dict = field(default_factory=dict)
    entry_id: bytes | str = "0-0"

    @property
    def final(self) -> bool:
        return self.kind in FINAL_KINDS


class ReplyChannel:
    def __init__(self, redis: Redis, job_id: str, ttl: float = 60.0):
        self.redis = redis
        self.key = reply_stream_key(job_id)
        self.ttl = max(1, int(ttl))

    # -- worker side -------------------------------------------------------
    def _append(self, fields: dict) -> None:
        """One round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.key, fields)
        pipe.expire(self.key, self.ttl)
        pipe.execute()

    def send_result(self, status: int, body: bytes, meta: dict | None = None) -> None:
        self._append({"kind": RESULT, "status": status, "body": body, "meta": orjson.dumps(meta or {})})

    def send_error(self, error: GatewayError, meta: dict | None = None) -> None:
        self._append({"kind": ERROR, "status": error.status, "error": orjson.dumps(error.to_dict()),
                      "meta": orjson.dumps(meta or {})})

    def send_chunk(self, data: bytes, *, lasts: float | None = None) -> None:
        """A stream's chunk. The first one (``lasts``: how long the stream may run) sets the
        key's expiry once; the others are a bare XADD, the cheapest write per chunk."""
        if lasts is None:
            self.redis.xadd(self.key, {"kind": CHUNK, "data": data})
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.key, {"kind": CHUNK, "data": data})
        pipe.expire(self.key, self.ttl + max(1, int(lasts)))
        pipe.execute()

    def send_end(self, meta: dict | None = None) -> None:
        self._append({"kind": END, "meta": orjson.dumps(meta or {})})

    # -- API side ----------------------------------------------------------
    def read(self, after: bytes | str, block_ms: int) -> list[Reply]:
        """Entries after ``after``, waiting up to ``block_ms`` for the first (0: do not wait)."""
        if block_ms > 0:
            answer = self.redis.xread({self.key: after}, block=block_ms)
        else:
            answer = self.redis.xread({self.key: after})
        return [_decode(entry_id, fields) for _stream, entries in answer or () for entry_id, fields in entries]

    def wait(self, deadline: float, *, gone: Callable[[], bool] | None = None, check_every: float = 1.0,
             first: bool = False) -> Reply | None:
        """Block until a final entry arrives (or, with ``first``, any entry); ``None`` once
        ``deadline`` (epoch s) passes.

        With ``gone`` (is the client still there?), the wait is cut into blocking
        reads of ``check_every`` seconds, and ``ClientGone`` is raised when it says so.
        """
        after: bytes | str = "0-0"
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            if gone is not None:
                if gone():
                    raise ClientGone()
                remaining = min(remaining, check_every)
            # BLOCK 0 would mean forever; the client's socket timeout must exceed this.
            for reply in self.read(after, max(1, int(remaining * 1000))):
                after = reply.entry_id
                if first or reply.final:
                    return reply

    def discard(self) -> None:
        self.redis.delete(self.key)


def _decode(entry_id, fields: dict) -> Reply:
    kind = (fields.get(b"kind") or b"").decode()
    meta = orjson.loads(fields.get(b"meta") or b"{}")
    if kind == CHUNK:
        return Reply(CHUNK, body=fields.get(b"data") or b"", entry_id=entry_id)
    if kind == ERROR:
        error = GatewayError.from_dict(orjson.loads(fields.get(b"error") or b"{}"))
        return Reply(ERROR, status=error.status, error=error, meta=meta, entry_id=entry_id)
    if kind == RESULT:
        return Reply(RESULT, status=int(fields.get(b"status") or 500), body=fields.get(b"body") or b"",
                     meta=meta, entry_id=entry_id)
    return Reply(kind or END, meta=meta, entry_id=entry_id)
