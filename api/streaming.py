"""Relaying a worker's stream to the client as server-sent events.

The response commits (200 and headers) only once the first chunk is in: until
then any failure is an ordinary HTTP error. After that, chunks are relayed as
they arrive, keep-alives go out while the provider is silent (so proxies do not
cut a long generation), and a failure ends the stream with an error event in
the client's format, never a clean end. A client that disconnects is noticed at
the next write; the request is then marked cancelled in Redis and the worker
drops the provider call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from api.dispatch import Dispatcher
from api.middleware import log_access
from shared.config import ModelConfig
from shared.errors import DeadlineExceeded, UpstreamError
from shared.replies import CHUNK, END, ERROR, Reply
from shared.sse import error_event, keepalive

SLACK = 5.0  # the worker enforces the stream's limits; the API gives it this much longer


def respond_with_stream(req, resp, dispatcher: Dispatcher, first: Reply, model: ModelConfig, *,
                        keepalive_interval: float) -> None:
    """``keepalive_interval``: seconds of provider silence before a keep-alive goes out."""
    resp.status = 200
    resp.content_type = "text/event-stream"
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Accel-Buffering", "no")  # nginx would otherwise hold the chunks back
    req.context.streaming = True  # the access record is written when the stream ends
    resp.stream = _relay(req, dispatcher, first, model, keepalive_interval)


def _relay(req, dispatcher: Dispatcher, first: Reply, model: ModelConfig, keepalive_interval: float) -> Iterator[bytes]:
    ctx = req.context
    wire = ctx.wire
    job_id = first.meta["job_id"]
    channel = dispatcher.channel(job_id)
    after = first.entry_id
    started = time.monotonic()
    last_data = started
    ends = started + model.max_stream_duration + SLACK
    outcome, meta = "client_closed", {}
    chunks = 1
    try:
        yield first.body
        while True:
            now = time.monotonic()
            idle_left = model.stream_idle_timeout + SLACK - (now - last_data)
            if now >= ends or idle_left <= 0:
                outcome = "timeout"
                yield error_event(wire, DeadlineExceeded("The stream stopped: the provider went silent or "
                                                          "the stream ran too long."))
                return
            replies = channel.read(after, max(1, int(min(keepalive_interval, idle_left, ends - now) * 1000)))
            if not replies:
                yield keepalive(wire)
                continue
            for reply in replies:
                after = reply.entry_id
                if reply.kind == CHUNK:
                    chunks += 1
                    last_data = time.monotonic()
                    yield reply.body
                elif reply.kind == END:
                    outcome, meta = "completed", reply.meta
                    return
                elif reply.kind == ERROR:
                    outcome, meta = "failed", reply.meta
                    yield error_event(wire, reply.error or UpstreamError())
                    return
    finally:
        if outcome != "completed" and outcome != "failed":
            dispatcher.cancel(job_id)  # the client left, or the stream timed out: drop the provider call
        dispatcher.janitor.discard(channel.key)
        ctx.log.update({"stream": True, "stream_outcome": outcome, "chunks": chunks,
                        "stream_seconds": round(time.monotonic() - started, 3)})
        if meta.get("usage"):
            ctx.log["usage"] = meta["usage"]
        log_access(req, 200)
