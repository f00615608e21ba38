"""How much of a streamed reply stays unread in Redis, against a real Redis: the API's
trims of what it relayed (``RelayReceipts``), the worker's count (``Backlog``) and the
worker's wait for a client that lags (``workers.jobs.Emitter``)."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.errors import DeadlineExceeded, RequestCancelled
from shared.jobs import CHAT_COMPLETIONS, JobRequest
from shared.replies import TRIM_BATCH_BYTES, Backlog, RelayReceipts, ReplyChannel
from tests.harness import wait_for
from workers.cancel import CLIENT_GONE, DEADLINE, CancelScope
from workers.jobs import Emitter

LIMIT = 4096


def stored_bytes(redis, key) -> int:
    """What a chunk-only reply stream holds in Redis: the sum of its entries' data."""
    return sum(len(fields.get(b"data", b"")) for _id, fields in redis.xrange(key))


def xlen_calls(redis) -> int:
    return int(redis.info("commandstats").get("cmdstat_xlen", {}).get("calls", 0))


def request(job_id: str = "job-1") -> JobRequest:
    return JobRequest(job_id=job_id, request_id="req-1", model="chat", requested_model="chat",
                      endpoint=CHAT_COMPLETIONS, body={}, deadline=time.time() + 60, stream=True,
                      stream_seconds=60.0)


def emitter(client, scope=None, *, limit=LIMIT, idle_timeout=5.0, job_id="job-1") -> Emitter:
    channel = ReplyChannel(client, job_id, ttl=60)
    return Emitter(channel, scope, request(job_id), max_unread=limit, idle_timeout=idle_timeout)


def chunk(i: int, size: int = 100) -> bytes:
    return (b"%06d" % i).ljust(size, b".")


class Reader(threading.Thread):
    """The API's side: reads the stream as the relay does, trims what it 'relayed'."""

    def __init__(self, client, job_id: str, limit: int, *, pause: float = 0.0):
        super().__init__(daemon=True)
        self.channel = ReplyChannel(client, job_id)
        self.receipts = RelayReceipts(self.channel, limit)
        self.pause = pause
        self.got: list[bytes] = []
        self.stop = threading.Event()

    def run(self) -> None:
        after = "0-0"
        while not self.stop.is_set():
            replies = self.channel.read(after, 50)
            for reply in replies:
                after = reply.entry_id
                time.sleep(self.pause)  # the client taking its time
                self.got.append(reply.body)
                self.receipts.relayed(reply, time.monotonic(), behind=reply is not replies[-1])


# -- the API's trims ------------------------------------------------------------------

def test_relayed_entries_are_trimmed_in_batches(client):
    channel = ReplyChannel(client, "job-1")
    ids = [client.xadd(channel.key, {"kind": "chunk", "data": chunk(i, 1000)}) for i in range(20)]
    receipts = RelayReceipts(channel, limit=1 << 20)
    assert receipts.batch == TRIM_BATCH_BYTES
    small = RelayReceipts(channel, limit=8000)
    assert small.batch == 2000  # a quarter of the limit, when that is less
    now = time.monotonic()
    replies = channel.read("0-0", 0)
    small.relayed(replies[0], now)
    assert client.xlen(channel.key) == 20  # 1000 bytes: not yet a batch
    small.relayed(replies[1], now)
    assert client.xlen(channel.key) == 18  # the batch is full: both relayed entries leave, exactly
    assert [entry_id for entry_id, _ in client.xrange(channel.key)] == ids[2:]
    small.relayed(replies[2], now + 1.5)  # a client that keeps up: no trim per chunk...
    assert client.xlen(channel.key) == 18
    small.relayed(replies[3], now + 1.5, behind=True)  # ...a slow one: a trim a second even below the batch
    assert client.xlen(channel.key) == 16


def test_a_failed_trim_is_retried_by_the_next(client):
    channel = ReplyChannel(client, "job-1")
    for i in range(4):
        client.xadd(channel.key, {"kind": "chunk", "data": chunk(i, 1000)})
    replies = channel.read("0-0", 0)
    receipts = RelayReceipts(ReplyChannel(redis.Redis(port=1, retry=Retry(NoBackoff(), 0)), "job-1"), 2000)
    receipts.relayed(replies[0], time.monotonic())
    receipts.relayed(replies[1], time.monotonic())  # Redis unreachable: logged, kept for the next trim
    assert receipts.untrimmed == 2000 and receipts.through == replies[1].entry_id
    receipts.channel = channel
    receipts.relayed(replies[2], time.monotonic())
    assert client.xlen(channel.key) == 1


# -- the worker's count ----------------------------------------------------------------

def test_backlog_counts_locally_and_learns_from_the_trims(client):
    channel = ReplyChannel(client, "job-1")
    backlog = Backlog(channel, limit=1600)  # blocks of 100 bytes
    for i in range(20):
        assert channel.send_chunk(chunk(i, 100), lasts=60 if i == 0 else None)
        backlog.wrote(100)
    assert backlog.unread == 2000 and backlog.over
    assert backlog.refresh() == 2000  # nothing relayed
    ids = [entry_id for entry_id, _ in client.xrange(channel.key)]
    channel.trim_through(ids[12])
    assert backlog.refresh() == stored_bytes(client, channel.key) == 700 and not backlog.over
    channel.trim_through(ids[-1])
    assert backlog.refresh() == 0
    channel.send_chunk(chunk(20))
    backlog.wrote(100)
    client.delete(channel.key)  # gone (read and discarded by the API): nothing is unread...
    assert backlog.refresh() == 0
    assert not channel.send_chunk(chunk(21))  # ...and no more is written: the key is not made again
    assert not client.exists(channel.key)


def test_backlog_sees_every_entry_relayed_even_within_a_block(client):
    channel = ReplyChannel(client, "job-1")
    backlog = Backlog(channel, limit=4800)  # blocks of 300 bytes: three of these chunks
    for i in range(12):
        channel.send_chunk(chunk(i), lasts=60 if i == 0 else None)
        backlog.wrote(100)
    backlog.refresh()
    first = client.xrange(channel.key, count=1)[0][0]
    channel.trim_through(first)  # one chunk relayed: not yet a whole block
    assert backlog.refresh() == 1200 and backlog.entries_left == 11


def test_backlog_blocks_overstate_by_less_than_a_block(client):
    channel = ReplyChannel(client, "job-1")
    backlog = Backlog(channel, limit=16000)  # blocks of 1000 bytes
    sizes = [37, 500, 1200, 3, 999, 64, 640, 2000, 7, 300] * 5
    for index, size in enumerate(sizes):
        channel.send_chunk(b"x" * size, lasts=60 if index == 0 else None)
        backlog.wrote(size)
    ids = [entry_id for entry_id, _ in client.xrange(channel.key)]
    for cut in range(0, len(ids), 3):
        channel.trim_through(ids[cut])
        actual = stored_bytes(client, channel.key)
        assert actual <= backlog.refresh() < actual + 1000


# -- the worker's wait -----------------------------------------------------------------

def test_the_common_case_costs_no_round_trip(client):
    emit = emitter(client, limit=1 << 20)
    before = xlen_calls(client)
    for i in range(500):  # 50 KB, well under the limit
        emit(chunk(i))
    assert xlen_calls(client) == before
    assert emit.backlog.unread == 50000


def test_a_client_that_reads_nothing_is_given_up_after_the_idle_timeout(client):
    scope = CancelScope("job-1")
    emit = emitter(client, scope, idle_timeout=0.5)
    highest = 0
    started = time.monotonic()
    with pytest.raises(RequestCancelled, match="read nothing of the stream for 500ms"):
        for i in range(1000):
            emit(chunk(i))
            highest = max(highest, stored_bytes(client, emit.channel.key))
    waited = time.monotonic() - started
    assert LIMIT < highest <= LIMIT + 100  # the limit plus one entry, never more
    assert scope.cancelled and scope.reason == CLIENT_GONE
    assert 0.5 <= waited < 5


def test_a_reader_that_keeps_up_gets_every_chunk_and_redis_holds_little(client):
    emit = emitter(client, CancelScope("job-1"), idle_timeout=5.0)
    reader = Reader(client, "job-1", LIMIT)
    reader.start()
    highest = 0
    try:
        for i in range(400):
            emit(chunk(i))
            highest = max(highest, stored_bytes(client, emit.channel.key))
        wanted = [chunk(i) for i in range(400)]
        wait_for(lambda: reader.got == wanted, timeout=10, message="every chunk, in order")
    finally:
        reader.stop.set()
        reader.join(5)
    assert highest <= LIMIT + 100


def test_a_slow_reader_holds_the_writer_back_and_gets_everything(client):
    emit = emitter(client, CancelScope("job-1"), idle_timeout=5.0)
    reader = Reader(client, "job-1", LIMIT, pause=0.002)
    reader.start()
    highest, waits = 0, 0
    try:
        for i in range(300):  # 30 KB through a 4 KB window
            began = time.monotonic()
            emit(chunk(i))
            waits += time.monotonic() - began > 0.004
            highest = max(highest, stored_bytes(client, emit.channel.key))
        wait_for(lambda: len(reader.got) == 300, timeout=10, message="every chunk")
    finally:
        reader.stop.set()
        reader.join(5)
    assert reader.got == [chunk(i) for i in range(300)]
    assert highest <= LIMIT + 100
    assert waits > 0  # the writer did wait for the reader


def test_a_stream_its_reader_has_deleted_gets_no_more(client):
    scope = CancelScope("job-1")
    emit = emitter(client, scope)
    emit(chunk(0))
    emit(chunk(1))
    client.delete(emit.channel.key)  # the API is done with it (the client left, say)
    with pytest.raises(RequestCancelled, match="Nobody reads this stream"):
        emit(chunk(2))
    assert not client.exists(emit.channel.key)
    assert scope.cancelled and scope.reason == CLIENT_GONE  # the provider's connection is closed


def test_a_client_reading_a_chunk_now_and_then_is_not_given_up(client, monkeypatch):
    """One chunk read every 0.3 s against an idle timeout of 0.5 s, with three chunks to a
    block: the client is reading, though a whole block drains only every 0.9 s. On a clock
    of the test's own, advanced by the worker's sleeps."""
    clock = [1000.0]
    monkeypatch.setattr("workers.jobs.time.monotonic", lambda: clock[0])
    channel = ReplyChannel(client, "job-1")

    class Scope(CancelScope):
        slept = 0.0

        def sleep(self, seconds: float) -> None:
            clock[0] += seconds
            self.slept += seconds
            while self.slept >= 0.3:  # the client takes one chunk
                self.slept -= 0.3
                oldest = client.xrange(channel.key, count=1)
                if oldest:
                    channel.trim_through(oldest[0][0])

    scope = Scope("job-1")
    emit = Emitter(channel, scope, request(), max_unread=4800, idle_timeout=0.5)
    for i in range(80):
        emit(chunk(i))
    assert not scope.cancelled
    assert clock[0] - 1000.0 > 3  # it did wait for the reader, well past the idle timeout


@pytest.mark.parametrize(("reason", "error"), [(CLIENT_GONE, RequestCancelled), (DEADLINE, DeadlineExceeded)])
def test_the_wait_ends_when_the_job_is_cancelled(client, reason, error):
    scope = CancelScope("job-1")
    emit = emitter(client, scope, idle_timeout=60.0)
    for i in range(41):  # just over the limit: the next chunk waits
        emit(chunk(i))
    timer = threading.Timer(0.3, scope.cancel, args=(reason,))
    timer.start()
    started = time.monotonic()
    with pytest.raises(error):
        emit(chunk(41))
    assert time.monotonic() - started < 5  # not the minute-long idle timeout
    timer.join()
