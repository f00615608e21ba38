"""The API's relay of a stream to a client that stops reading, against a real Redis and a
real loopback TCP connection: the relay is driven as gunicorn drives a response body
(write each item, then ``close()``)."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from api.answers import Answers
from api.stream_socket import StreamSocket
from api.streaming import _relay
from shared.config import parse_config
from shared.keys import cancel_key
from shared.replies import ReplyChannel
from shared.sse import OPENAI

IDLE = 0.5


@pytest.fixture
def answers(client):
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://127.0.0.1:9/v1",
                                       "stream_idle_timeout": IDLE}],
                           "jobs": {"max_unread_reply_bytes": "4KiB"}}, {})
    return Answers(config, client, client)


@pytest.fixture
def connection():
    """(the server's end, the client's end) of a loopback TCP connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    near = socket.create_connection(listener.getsockname())
    far, _ = listener.accept()
    listener.close()
    yield far, near
    far.close()
    near.close()


def request(sock) -> SimpleNamespace:
    context = SimpleNamespace(wire=OPENAI, log={}, started=time.perf_counter(), request_id="req-1")
    return SimpleNamespace(context=context, env={"gunicorn.socket": sock}, method="POST",
                           path="/v1/chat/completions", query_string="", remote_addr="127.0.0.1")


def stream(client, job_id: str, chunks: int, *, end: bool = True):
    """A worker's reply stream, already written; its first entry as the wait hands it over."""
    channel = ReplyChannel(client, job_id)
    for i in range(chunks):
        channel.send_chunk(b"data: %06d " % i + b"x" * 1000 + b"\n\n", lasts=60 if i == 0 else None)
    if end:
        channel.send_end({})
    first = channel.read("0-0", 0)[0]
    return channel, first


def serve(body, sock, *, fail_on: int | None = None, error: Exception | None = None) -> None:
    """What gunicorn does with a response body (``close()`` while a failed write propagates);
    ``error`` is raised at item ``fail_on`` as the write's."""
    def write() -> None:
        try:
            for index, item in enumerate(body):
                if index == fail_on:
                    raise error
                sock.sendall(item)
        finally:
            body.close()

    try:
        write()
    except OSError:
        pass  # gunicorn logs it and closes the connection


def test_a_client_that_reads_nothing_is_dropped_after_the_idle_timeout(client, answers, connection):
    far, near = connection
    far.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    channel, first = stream(client, "job-1", 2000, end=False)  # 2 MB: more than the buffers hold
    req = request(far)
    started = time.monotonic()
    serve(_relay(req, answers, "job-1", first, answers.config.models[0], 60.0), far)
    assert IDLE <= time.monotonic() - started < 10
    assert req.context.log["stream_outcome"] == "client_stalled"
    assert client.exists(cancel_key("job-1"))  # the worker is told to drop the job
    with pytest.raises(OSError):
        far.sendall(b"more")  # reset: the server's next write fails at once
    assert 0 < client.xlen(channel.key) < 2000  # what was relayed has left Redis


@pytest.mark.parametrize(("error", "outcome"), [(TimeoutError("timed out"), "client_stalled"),
                                                 (BlockingIOError(), "client_stalled"),
                                                 (ConnectionResetError(), "client_closed")])
def test_a_write_that_fails_tells_a_stall_from_a_leaving(client, answers, connection, error, outcome):
    far, _ = connection
    _, first = stream(client, "job-2", 10)
    req = request(far)
    serve(_relay(req, answers, "job-2", first, answers.config.models[0], 60.0), far, fail_on=3, error=error)
    assert req.context.log["stream_outcome"] == outcome
    assert client.exists(cancel_key("job-2"))


def test_a_client_that_reads_gets_everything_and_redis_is_trimmed_as_it_goes(client, answers, connection):
    far, near = connection
    channel, first = stream(client, "job-3", 200)
    req = request(far)
    previous = far.gettimeout()
    received = bytearray()
    reader = threading.Thread(target=lambda: [received.extend(part) for part in iter(lambda: near.recv(65536), b"")])
    reader.start()
    body = _relay(req, answers, "job-3", first, answers.config.models[0], 60.0)
    left = []
    try:
        for item in body:
            far.sendall(item)
            left.append(client.xlen(channel.key))
    finally:
        body.close()
    far.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert req.context.log["stream_outcome"] == "completed"
    assert bytes(received) == b"".join(b"data: %06d " % i + b"x" * 1000 + b"\n\n" for i in range(200))
    # Entries leave as they are relayed: a trim every 1 KiB (a quarter of the limit), two of these chunks.
    assert all(count <= 201 - relayed + 2 for relayed, count in enumerate(left, start=1))
    assert far.gettimeout() == previous  # the stream's timeout is the stream's only
    assert not client.exists(cancel_key("job-3"))


def test_stream_socket_waits_for_room_and_restores_the_timeout(connection):
    far, near = connection
    far.settimeout(7.0)
    watched = StreamSocket(far, 0.2)
    assert far.gettimeout() == 0.2 and watched.writable()
    far.setblocking(False)
    try:
        while True:
            far.send(b"x" * 65536)
    except BlockingIOError:
        pass
    far.settimeout(0.2)
    started = time.monotonic()
    assert not watched.writable()  # full: no room within the timeout
    assert time.monotonic() - started >= 0.2
    watched.release()
    assert far.gettimeout() == 7.0
    assert StreamSocket.of({}, 1.0) is None  # another server: no socket, no bound


def test_a_streams_send_buffer_is_capped_so_a_stalled_client_pins_little_kernel_memory(connection):
    far, _near = connection
    stream_socket = StreamSocket(far, IDLE)
    # A size set explicitly (Linux then reports twice it, for its bookkeeping, and caps it at
    # net.core.wmem_max) turns the kernel's autotuning off for this socket.
    with open("/proc/sys/net/core/wmem_max") as limit:
        expected = 2 * min(256 * 1024, int(limit.read()))
    assert far.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == expected
    stream_socket.release()
