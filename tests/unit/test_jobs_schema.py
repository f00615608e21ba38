"""The job payload (``shared.jobs``) and the reply stream (``shared.replies``, on a real Redis)."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import FrozenInstanceError

import pytest
import redis

from shared.errors import GatewayError, QueueFull, UpstreamRateLimited, UpstreamRejected
from shared.jobs import CHAT_COMPLETIONS, RQ_QUEUE_TTL_MARGIN, RQ_TIMEOUT_MARGIN, SCHEMA_VERSION, JobRequest
from shared.keys import reply_stream_key
from shared.replies import ReplyChannel
from tools.embedded_redis import EmbeddedRedis


def job(**overrides) -> JobRequest:
    fields = {
        "job_id": "job-1",
        "request_id": "req-1",
        "model": "m",
        "requested_model": "m-alias",
        "endpoint": CHAT_COMPLETIONS,
        "body": {"model": "m-alias", "messages": [{"role": "user", "content": "hi"}]},
        "deadline": time.time() + 30,
        "caller": {"user_id": "7", "username": "ada", "project_id": None},
    }
    return JobRequest(**{**fields, **overrides})


# -- JobRequest ------------------------------------------------------------------

def test_round_trip_through_a_dict() -> None:
    request = job(enqueued_at=1234.5)
    data = request.to_dict()
    assert set(data) == {"job_id", "request_id", "model", "requested_model", "endpoint", "body", "deadline",
                         "enqueued_at", "caller", "reservation", "route", "stream", "stream_seconds", "client_headers",
                         "version"}
    assert data["version"] == SCHEMA_VERSION
    assert JobRequest.from_dict(data) == request


def test_round_trip_through_json() -> None:
    request = job()
    assert JobRequest.from_dict(json.loads(json.dumps(request.to_dict()))) == request


def test_from_dict_ignores_unknown_keys() -> None:
    request = job()
    data = {**request.to_dict(), "added_in_v2": {"x": 1}, "priority": 5}
    assert JobRequest.from_dict(data) == request


def test_from_dict_fills_defaults() -> None:
    data = job().to_dict()
    for name in ("enqueued_at", "caller", "version"):
        del data[name]
    before = time.time()
    request = JobRequest.from_dict(data)
    assert request.caller == {}
    assert request.version == SCHEMA_VERSION
    assert before <= request.enqueued_at <= time.time()


def test_from_dict_without_a_required_field_fails() -> None:
    data = job().to_dict()
    del data["deadline"]
    with pytest.raises(TypeError):
        JobRequest.from_dict(data)


def test_to_dict_does_not_copy_the_body() -> None:
    request = job()
    data = request.to_dict()
    assert data["body"] is request.body
    assert data["caller"] is request.caller


def test_job_request_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        job().deadline = 0  # type: ignore[misc]


def test_remaining() -> None:
    request = job(deadline=1000.0)
    assert request.remaining(now=990.0) == 10.0
    assert request.remaining(now=1010.0) == -10.0
    assert 29 < job(deadline=time.time() + 30).remaining() <= 30


@pytest.mark.parametrize(("seconds", "whole"), [(10.5, 11), (3.2, 4), (29.5, 30)])
def test_rq_timeouts_are_the_remaining_time_rounded_up_plus_a_margin(seconds: float, whole: int) -> None:
    request = job(deadline=time.time() + seconds)
    assert RQ_TIMEOUT_MARGIN == 5 and RQ_QUEUE_TTL_MARGIN == 30
    assert request.rq_job_timeout() == whole + 5
    assert request.rq_queue_ttl() == whole + 30


def test_rq_timeouts_for_a_passed_deadline_keep_one_second() -> None:
    request = job(deadline=time.time() - 100)
    assert request.rq_job_timeout() == 1 + 5
    assert request.rq_queue_ttl() == 1 + 30


# -- ReplyChannel on a real Redis -----------------------------------------------

@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    yield client
    client.close()


def channel(r: redis.Redis, ttl: float = 60.0) -> ReplyChannel:
    return ReplyChannel(r, uuid.uuid4().hex, ttl=ttl)


def test_send_result_then_wait(r: redis.Redis) -> None:
    reply_channel = channel(r)
    body = json.dumps({"id": "chatcmpl-1", "choices": []}).encode()
    reply_channel.send_result(200, body, meta={"attempts": 2, "started_at": 1234.5})
    reply = reply_channel.wait(time.time() + 2)
    assert reply is not None
    assert reply.status == 200
    assert reply.body == body
    assert reply.error is None
    assert reply.meta == {"attempts": 2, "started_at": 1234.5}


def test_result_without_meta_has_empty_meta(r: redis.Redis) -> None:
    reply_channel = channel(r)
    reply_channel.send_result(201, b"{}")
    reply = reply_channel.wait(time.time() + 2)
    assert reply is not None
    assert (reply.status, reply.body, reply.meta) == (201, b"{}", {})


@pytest.mark.parametrize(
    "error",
    [QueueFull("full", retry_after=1), UpstreamRejected("bad field", status=422),
     UpstreamRateLimited("slow", retry_after=2.5), GatewayError("boom")],
    ids=lambda e: type(e).__name__,
)
def test_send_error_then_wait(r: redis.Redis, error: GatewayError) -> None:
    reply_channel = channel(r)
    reply_channel.send_error(error, meta={"attempts": 3})
    reply = reply_channel.wait(time.time() + 2)
    assert reply is not None
    assert type(reply.error) is type(error)
    assert reply.status == error.status
    assert reply.error.status == error.status
    assert reply.error.message == error.message
    assert reply.error.retry_after == error.retry_after
    assert reply.error.should_retry == error.should_retry
    assert reply.body == b""
    assert reply.meta == {"attempts": 3}


def test_wait_with_nothing_sent_returns_none_at_the_deadline(r: redis.Redis) -> None:
    reply_channel = channel(r)
    started = time.monotonic()
    assert reply_channel.wait(time.time() + 0.3) is None
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2.0


def test_wait_past_the_deadline_returns_none_at_once(r: redis.Redis) -> None:
    reply_channel = channel(r)
    reply_channel.send_result(200, b"{}")  # even with an answer there: the deadline has passed
    started = time.monotonic()
    assert reply_channel.wait(time.time() - 1) is None
    assert time.monotonic() - started < 0.5


def test_the_stream_expires(r: redis.Redis) -> None:
    reply_channel = channel(r, ttl=30)
    assert reply_channel.key == reply_stream_key(reply_channel.key.rsplit(":", 1)[1])
    reply_channel.send_result(200, b"{}")
    ttl = r.ttl(reply_channel.key)
    assert 0 < ttl <= 30


def test_a_short_ttl_is_at_least_one_second(r: redis.Redis) -> None:
    reply_channel = channel(r, ttl=0.2)
    assert reply_channel.ttl == 1
    reply_channel.send_error(QueueFull())
    assert 0 < r.pttl(reply_channel.key) <= 1000


def test_entries_that_are_not_final_are_skipped(r: redis.Redis) -> None:
    reply_channel = channel(r)
    r.xadd(reply_channel.key, {"kind": "progress", "note": "started"})
    r.xadd(reply_channel.key, {"kind": "heartbeat"})
    reply_channel.send_result(200, b'{"ok":true}')
    reply = reply_channel.wait(time.time() + 2)
    assert reply is not None
    assert reply.body == b'{"ok":true}'


def test_the_first_final_entry_wins(r: redis.Redis) -> None:
    reply_channel = channel(r)
    reply_channel.send_error(QueueFull("first"))
    reply_channel.send_result(200, b"second")
    reply = reply_channel.wait(time.time() + 2)
    assert reply is not None
    assert isinstance(reply.error, QueueFull)
    assert reply.error.message == "first"


def blocked_readers(r: redis.Redis) -> int:
    return sum(1 for client in r.client_list() if client.get("cmd") == "xread" and "b" in client.get("flags", ""))


def test_a_reader_waiting_before_the_writer_sends_gets_the_entry(r: redis.Redis, redis_url: str) -> None:
    reader = redis.Redis.from_url(redis_url, socket_timeout=10)
    reader_channel = ReplyChannel(reader, uuid.uuid4().hex)
    writer_channel = ReplyChannel(r, reader_channel.key.rsplit(":", 1)[1])
    assert writer_channel.key == reader_channel.key
    writer: dict = {}

    def write_once_the_reader_blocks() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if blocked_readers(r) > 0:
                writer["saw_reader_blocked"] = True
                break
            time.sleep(0.01)  # polling Redis for the reader, with a deadline
        # a non-final entry first, so the reader must go round and block again
        r.xadd(writer_channel.key, {"kind": "progress"})
        writer_channel.send_result(200, b'{"late":true}', meta={"attempts": 1})

    thread = threading.Thread(target=write_once_the_reader_blocks, daemon=True)
    thread.start()
    try:
        reply = reader_channel.wait(time.time() + 5)
    finally:
        thread.join(5)
        reader.close()
    assert writer.get("saw_reader_blocked") is True, "the reader never blocked before the write"
    assert reply is not None
    assert reply.body == b'{"late":true}'
    assert reply.meta == {"attempts": 1}
