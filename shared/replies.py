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
  only then does the API send its 200; it may carry ``meta`` the API needs
  before it sends its headers (``dropped_params``).
- ``end`` (final): the stream finished cleanly (its last chunk carried the end marker).

Final entries carry ``meta``: facts for the access log (when the job started,
attempts, usage). ``meta["dropped_params"]`` (the ``DROPPED_PARAMS`` key), on a
result or a stream's first chunk, names what the model's ``drop_params`` removed
from the request: the API sends it as the ``x-aigw-dropped-params`` header and
logs it. ``meta["served_by"]`` (``SERVED_BY``), on a result or a stream's first
chunk, is ``<model>/<deployment>``: which configured model and deployment served
it, sent as the ``x-aigw-served-by`` header and logged. The stream expires on
its own; the API deletes it when done.

A stream's chunks leave Redis once relayed: the API trims what it has sent to
the client (``RelayReceipts``), and the worker stops adding chunks while more
than ``jobs.max_unread_reply_bytes`` are still there (``Backlog``), so a client
that reads slowly, or not at all, never has its whole answer held in Redis.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.errors import GatewayError
from shared.keys import reply_stream_key

log = logging.getLogger("aigw.replies")

RESULT, ERROR, CHUNK, END = "result", "error", "chunk", "end"
READ_RETRY_FIRST, READ_RETRY_MAX = 0.05, 0.5  # seconds between reads while Redis is unreachable
FINAL_KINDS = (RESULT, ERROR, END)
TRIM_BATCH_BYTES = 65536  # the API trims what it relayed once this much has gone out...
TRIM_INTERVAL = 1.0  # ...or once this many seconds have passed since its last trim
DROPPED_PARAMS = "dropped_params"  # meta key: the request paths a translation dropped (drop_params)
DROPPED_PARAMS_HEADER = "x-aigw-dropped-params"  # ...and the response header naming them, comma-separated
SERVED_BY = "served_by"  # meta key: "<model>/<deployment>" that served the request (models[].deployments)
SERVED_BY_HEADER = "x-aigw-served-by"  # ...and the response header saying so


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
    def _append(self, fields: dict, pipe=None) -> None:
        """One round trip; or, given a pipeline, its commands put on it (sent with whatever
        else the pipeline carries)."""
        if pipe is None:
            with self.redis.pipeline(transaction=False) as own:
                self._append(fields, own)
                own.execute()
            return
        pipe.xadd(self.key, fields)
        pipe.expire(self.key, self.ttl)

    def send_result(self, status: int, body: bytes, meta: dict | None = None, *, pipe=None) -> None:
        self._append({"kind": RESULT, "status": status, "body": body, "meta": orjson.dumps(meta or {})}, pipe)

    def send_error(self, error: GatewayError, meta: dict | None = None, *, pipe=None) -> None:
        self._append({"kind": ERROR, "status": error.status, "error": orjson.dumps(error.to_dict()),
                      "meta": orjson.dumps(meta or {})}, pipe)

    def send_chunk(self, data: bytes, *, lasts: float | None = None, meta: dict | None = None) -> bool:
        """A stream's chunk. The first one (``lasts``: how long the stream may run) sets the
        key's expiry once, and may carry ``meta``; the others are a bare XADD, the cheapest
        write per chunk.

        False when the stream is gone: its reader has finished with it (deleted it), so
        nobody reads on. The chunk is then not written: a later chunk must not make the
        key again, without its expiry (NOMKSTREAM).
        """
        if lasts is None:
            return self.redis.xadd(self.key, {"kind": CHUNK, "data": data}, nomkstream=True) is not None
        fields = {"kind": CHUNK, "data": data}
        if meta:
            fields["meta"] = orjson.dumps(meta)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(self.key, fields)
        pipe.expire(self.key, self.ttl + max(1, int(lasts)))
        pipe.execute()
        return True

    def send_end(self, meta: dict | None = None, *, pipe=None) -> None:
        self._append({"kind": END, "meta": orjson.dumps(meta or {})}, pipe)

    # -- API side ----------------------------------------------------------
    def read(self, after: bytes | str, block_ms: int) -> list[Reply]:
        """Entries after ``after``, waiting up to ``block_ms`` for the first (0: do not wait).

        A blocking read survives Redis going away (a restart): it tries again until
        ``block_ms`` has passed, then returns nothing, so the caller keeps waiting until its
        own deadline and reads on from ``after`` once Redis is back (a persisted stream
        still holds what was written). Reading again is safe: a read changes nothing.
        """
        if block_ms <= 0:
            answer = self.redis.xread({self.key: after})
            return [_decode(entry_id, fields) for _stream, entries in answer or () for entry_id, fields in entries]
        ends = time.monotonic() + block_ms / 1000
        pause = READ_RETRY_FIRST
        while True:
            try:
                answer = self.redis.xread({self.key: after}, block=max(1, int((ends - time.monotonic()) * 1000)))
            except (RedisConnectionError, RedisTimeoutError):  # BusyLoadingError too: Redis loading its file
                left = ends - time.monotonic()
                if left <= 0:
                    return []
                time.sleep(min(pause, left))
                pause = min(READ_RETRY_MAX, pause * 2)
                continue
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

    # -- what the client has read (see RelayReceipts and Backlog) -----------
    def trim_through(self, entry_id: bytes | str) -> None:
        """Remove every entry up to ``entry_id``, inclusive: they have reached the client."""
        # Exact, not "~": an approximate trim keeps whole radix-tree nodes, and the
        # worker, counting entries, would wait for a trim that never comes.
        self.redis.xtrim(self.key, minid=_next_id(entry_id), approximate=False)

    def entries_left(self) -> int:
        """How many entries the stream still holds (0 once it is gone)."""
        return self.redis.xlen(self.key)


class RelayReceipts:
    """The API's side of the accounting: what it relayed to the client leaves Redis.

    Trimming after every chunk would add a round trip to each; instead the relayed
    entries are trimmed once ``TRIM_BATCH_BYTES`` (at most a quarter of the limit)
    have gone out. While the relay is behind the stream (more entries were read than
    relayed so far: the client is the slower side, and the worker may be waiting for
    it), they are also trimmed ``TRIM_INTERVAL`` after the last trim, so a client
    reading slowly still shows the worker it reads; a stream whose client keeps up
    (one chunk a second, say) costs no trim per chunk. A failed trim is retried by
    the next.
    """

    def __init__(self, channel: ReplyChannel, limit: int):
        self.channel = channel
        self.batch = max(1, min(TRIM_BATCH_BYTES, limit // 4))
        self.untrimmed = 0
        self.through: bytes | str | None = None
        self.last_trim = time.monotonic()

    def relayed(self, reply: Reply, now: float, *, behind: bool = False) -> None:
        """``reply`` has been written to the client (``now``: ``time.monotonic()``); ``behind``:
        entries read after it wait to be relayed."""
        self.untrimmed += len(reply.body)
        self.through = reply.entry_id
        if self.untrimmed >= self.batch or (behind and now - self.last_trim >= TRIM_INTERVAL):
            self.trim(now)

    def trim(self, now: float) -> None:
        if self.through is None:
            return
        try:
            self.channel.trim_through(self.through)
        except RedisError as error:
            log.warning("could not trim a relayed reply stream", extra={"key": self.channel.key, "error": str(error)})
            return
        self.untrimmed, self.through, self.last_trim = 0, None, now


class Backlog:
    """The worker's side: how many bytes of its chunks have not been relayed to the client yet.

    Counted locally as written minus known relayed, an upper bound that costs no
    round trip; only once it passes the limit does ``refresh`` ask Redis (one XLEN:
    the API trims relayed entries from the front, so the entries left are the last
    ones written). Entries are counted in blocks of a sixteenth of the limit, not
    one by one, so a stream's record stays a few dozen numbers; a block leaves the
    count once all of it was relayed, so the count overstates by less than a block.
    """

    def __init__(self, channel: ReplyChannel, limit: int):
        self.channel = channel
        self.limit = limit
        self.unread = 0  # bytes written and not known relayed
        self.entries_left = 0  # what the stream held at the last refresh: fewer since means the client reads
        self._block = max(1, limit // 16)
        self._blocks: deque[tuple[int, int]] = deque()  # closed blocks: (entries, bytes), oldest first
        self._open_entries = 0
        self._open_bytes = 0

    @property
    def over(self) -> bool:
        """More than the limit may be unread: ``refresh`` before adding another chunk."""
        return self.unread > self.limit

    def wrote(self, size: int) -> None:
        self.unread += size
        self._open_entries += 1
        self._open_bytes += size
        if self._open_bytes >= self._block:
            self._blocks.append((self._open_entries, self._open_bytes))
            self._open_entries = self._open_bytes = 0

    def refresh(self) -> int:
        """Learn from Redis what was relayed; return the bytes still unread (an upper bound)."""
        known = sum(entries for entries, _ in self._blocks) + self._open_entries
        self.entries_left = self.channel.entries_left()
        relayed = known - self.entries_left
        while self._blocks and self._blocks[0][0] <= relayed:
            entries, size = self._blocks.popleft()
            relayed -= entries
            self.unread -= size
        if not self._blocks and self._open_entries and relayed >= self._open_entries:
            self.unread -= self._open_bytes
            self._open_entries = self._open_bytes = 0
        return self.unread


def _next_id(entry_id: bytes | str) -> str:
    """The smallest stream id after ``entry_id`` ("<ms>-<seq>")."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    millis, _, seq = text.partition("-")
    return f"{millis}-{int(seq or 0) + 1}"


def _decode(entry_id, fields: dict) -> Reply:
    kind = (fields.get(b"kind") or b"").decode()
    meta = orjson.loads(fields.get(b"meta") or b"{}")
    if kind == CHUNK:
        return Reply(CHUNK, body=fields.get(b"data") or b"", meta=meta, entry_id=entry_id)
    if kind == ERROR:
        error = GatewayError.from_dict(orjson.loads(fields.get(b"error") or b"{}"))
        return Reply(ERROR, status=error.status, error=error, meta=meta, entry_id=entry_id)
    if kind == RESULT:
        return Reply(RESULT, status=int(fields.get(b"status") or 500), body=fields.get(b"body") or b"",
                     meta=meta, entry_id=entry_id)
    return Reply(kind or END, meta=meta, entry_id=entry_id)
