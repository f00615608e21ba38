"""Relaying a worker's stream to the client as server-sent events.

The response commits (200 and headers) only once the first chunk is in: until
then any failure is an ordinary HTTP error. After that, chunks are relayed as
they arrive, keep-alives go out while the provider is silent (so proxies do not
cut a long generation), and a failure ends the stream with an error event in
the client's format, never a clean end. A client that disconnects is noticed at
the next write; the request is then marked cancelled in Redis and the worker
drops the provider call. So is a client that stops reading: once no chunk could
be written to it for the model's ``stream_idle_timeout`` (``api.stream_socket``),
it is dropped. What has been relayed is trimmed from the reply stream
(``shared.replies.RelayReceipts``), which lets the worker go on.

A client whose format is not the one the worker frames in (GitLab Duo's raw text, NDJSON or its
own SSE events: ``api.duo.shapes``) gets the chunks through a ``StreamShape``, which also says
what keeps it warm and how a failure ends it (with an event, or by closing the connection).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

from api.answers import Answers
from api.middleware import log_access
from api.stream_socket import StreamSocket
from shared.config import ModelConfig
from shared.errors import DeadlineExceeded, GatewayError, UpstreamError
from shared.replies import CHUNK, END, ERROR, RelayReceipts, Reply
from shared.sse import RESPONSES, ResponsesTail, error_event, keepalive

SLACK = 5.0  # the worker enforces the stream's limits; the API gives it this much longer
# The access record's stream_outcome: how a stream ended.
COMPLETED, FAILED, TIMEOUT, CLIENT_CLOSED, CLIENT_STALLED = (
    "completed", "failed", "timeout", "client_closed", "client_stalled")


class StreamShape:
    """What a client whose format the worker does not frame in gets of a stream. Each method
    returns the bytes to send (``b""``: nothing); ``failure`` and ``keepalive`` may return None:
    for a failure, the connection is closed without a clean end; for a keep-alive, none is sent."""

    content_type = "text/event-stream"
    headers: dict[str, str] = {}

    def chunk(self, body: bytes) -> bytes:
        return body

    def end(self) -> bytes:
        return b""

    def failure(self, error: GatewayError) -> bytes | None:
        return None

    def keepalive(self) -> bytes | None:
        return None


def respond_with_stream(req, resp, answers: Answers, job_id: str, first: Reply, model: ModelConfig, *,
                        keepalive_interval: float, shape: StreamShape | None = None) -> None:
    """``keepalive_interval``: seconds of provider silence before a keep-alive goes out; ``shape``:
    how the chunks reach a client of another format (None: relayed as the worker framed them)."""
    resp.status = 200
    resp.content_type = shape.content_type if shape is not None else "text/event-stream"
    for name, value in (shape.headers if shape is not None else {}).items():
        resp.set_header(name, value)
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Accel-Buffering", "no")  # nginx would otherwise hold the chunks back
    req.context.streaming = True  # the access record is written when the stream ends
    resp.stream = _relay(req, answers, job_id, first, model, keepalive_interval, shape)


def _relay(req, answers: Answers, job_id: str, first: Reply, model: ModelConfig,
           keepalive_interval: float, shape: StreamShape | None = None) -> Iterator[bytes]:
    ctx = req.context
    wire = ctx.wire
    tail = ResponsesTail() if wire == RESPONSES else None  # what its response.failed must name
    channel = answers.channel(job_id)
    receipts = RelayReceipts(channel, answers.config.jobs.max_unread_reply_bytes)
    client = StreamSocket.of(req.env, model.stream_idle_timeout)
    after = first.entry_id
    started = time.monotonic()
    last_data = started
    ends = started + model.max_stream_duration + SLACK
    outcome, meta = CLIENT_CLOSED, {}
    chunks = 1
    try:
        yield first.body if shape is None else shape.chunk(first.body)
        if tail is not None:
            tail.relayed(first.body)
        receipts.relayed(first, time.monotonic())
        while True:
            now = time.monotonic()
            idle_left = model.stream_idle_timeout + SLACK - (now - last_data)
            if now >= ends or idle_left <= 0:
                outcome = TIMEOUT
                late = DeadlineExceeded("The stream stopped: the provider went silent or the stream ran too long.")
                if shape is None:
                    yield error_event(wire, late, tail)
                else:
                    yield from _shaped_failure(shape, late, client)
                return
            replies = channel.read(after, max(1, int(min(keepalive_interval, idle_left, ends - now) * 1000)))
            if not replies:
                if client is not None and not client.writable():
                    outcome = CLIENT_STALLED
                    return
                beat = keepalive(wire) if shape is None else shape.keepalive()
                if beat:
                    yield beat
                continue
            last = len(replies) - 1
            for index, reply in enumerate(replies):
                after = reply.entry_id
                if reply.kind == CHUNK:
                    chunks += 1
                    last_data = time.monotonic()
                    if client is not None and not client.writable():
                        outcome = CLIENT_STALLED
                        return
                    yield reply.body if shape is None else shape.chunk(reply.body)
                    if tail is not None:
                        tail.relayed(reply.body)
                    receipts.relayed(reply, time.monotonic(), behind=index < last)
                elif reply.kind == END:
                    outcome, meta = COMPLETED, reply.meta
                    if shape is not None:
                        yield shape.end()
                    return
                elif reply.kind == ERROR:
                    outcome, meta = FAILED, reply.meta
                    if shape is None:
                        yield error_event(wire, reply.error or UpstreamError(), tail)
                    else:
                        yield from _shaped_failure(shape, reply.error or UpstreamError(), client)
                    return
    except GeneratorExit:
        # The server stopped writing the stream: the client left, or (a send timeout, the
        # socket's own or the kernel's, raised in the server's write) it stopped reading mid-chunk.
        if isinstance(sys.exc_info()[1].__context__, (TimeoutError, BlockingIOError)):
            outcome = CLIENT_STALLED
        raise
    finally:
        if client is not None:
            if outcome == CLIENT_STALLED:
                client.drop()
            else:
                client.release()
        if outcome != COMPLETED and outcome != FAILED:
            answers.cancel(job_id)  # the client left or stalled, or the stream timed out: drop the provider call
        answers.janitor.discard(channel.key)
        ctx.log.update({"stream": True, "stream_outcome": outcome, "chunks": chunks,
                        "stream_seconds": round(time.monotonic() - started, 3)})
        if meta.get("usage"):
            ctx.log["usage"] = meta["usage"]
        log_access(req, 200)


def _shaped_failure(shape: StreamShape, error: GatewayError, client: StreamSocket | None) -> Iterator[bytes]:
    """The end of a failed stream in ``shape``'s format: its failure event, or (None) the connection
    closed without a clean end, so that the client cannot take the text it has for a whole answer.
    Without the server's socket (not gunicorn) the stream just ends."""
    ending = shape.failure(error)
    if ending is not None:
        yield ending
    elif client is not None:
        client.drop()
