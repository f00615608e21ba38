"""How a job's outcome travels back from a worker to the waiting API process.

Each job has a reply Redis Stream (``shared.keys.reply_stream_key``). The worker
appends entries; the API blocks on ``XREAD`` until a final entry arrives or the
request's deadline passes, so there is no polling and no race: an entry written
before the reader attaches is still read. Final entry kinds:

- ``result``: ``status`` and ``body`` (the response JSON, passed through as bytes).
- ``error``: a ``GatewayError`` as a dict.

Both carry ``meta``: facts for the access log (when the job started, attempts, ...).

The stream expires on its own; the API deletes it as soon as it has the answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis

from shared.errors import GatewayError
from shared.keys import reply_stream_key

RESULT, ERROR = "result", "error"
FINAL_KINDS = (RESULT, ERROR)


class ClientGone(Exception):
    """The client disconnected while waiting for its answer."""


@dataclass
class Reply:
    status: int
    body: bytes = b""
    error: GatewayError | None = None
    meta: dict = field(default_factory=dict)


class ReplyChannel:
    def __init__(self, redis: Redis, job_id: str, ttl: float = 60.0):
        self.redis = redis
        self.key = reply_stream_key(job_id)
        self.ttl = max(1, int(ttl))

    # -- worker side -------------------------------------------------------
    def _append(self, fields: dict) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.key, fields)
        pipe.expire(self.key, self.ttl)
        pipe.execute()

    def send_result(self, status: int, body: bytes, meta: dict | None = None) -> None:
        self._append({"kind": RESULT, "status": status, "body": body, "meta": json.dumps(meta or {})})

    def send_error(self, error: GatewayError, meta: dict | None = None) -> None:
        self._append(
            {
                "kind": ERROR,
                "status": error.status,
                "error": json.dumps(error.to_dict()),
                "meta": json.dumps(meta or {}),
            }
        )

    # -- API side ----------------------------------------------------------
    def wait(self, deadline: float, *, gone: Callable[[], bool] | None = None,
             check_every: float = 1.0) -> Reply | None:
        """Block until a final entry arrives; ``None`` once ``deadline`` (epoch s) passes.

        With ``gone`` (is the client still there?), the wait is cut into blocking
        reads of ``check_every`` seconds, and ``ClientGone`` is raised when it says so.
        """
        last_id = "0-0"
        while True:
            remaining = deadline - time.time()
            if remaining <= 0:
                return None
            if gone is not None:
                if gone():
                    raise ClientGone()
                remaining = min(remaining, check_every)
            # BLOCK 0 would mean forever; the client's socket timeout must exceed this.
            answer = self.redis.xread({self.key: last_id}, block=max(1, int(remaining * 1000)))
            for _stream, entries in answer or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    kind = _text(fields.get(b"kind"))
                    if kind in FINAL_KINDS:
                        return _decode_final(kind, fields)

    def discard(self) -> None:
        self.redis.delete(self.key)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def _decode_final(kind: str, fields: dict) -> Reply:
    meta = json.loads(fields.get(b"meta") or b"{}")
    status = int(fields.get(b"status") or 500)
    if kind == RESULT:
        return Reply(status=status, body=fields.get(b"body") or b"", meta=meta)
    error = GatewayError.from_dict(json.loads(fields.get(b"error") or b"{}"))
    return Reply(status=error.status, error=error, meta=meta)
