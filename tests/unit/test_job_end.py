"""A job's last writes (``workers.job_end``), against a real Redis: the answer, the
settlement and whatever the worker adds go in one round trip, the answer first; a
settlement Redis cannot run never costs the answer; what waits for the answer runs
once it is out."""

from __future__ import annotations

import pytest

from shared.errors import UpstreamError
from shared.ratelimit import MINUTE, TOKENS, Limit, RateLimiter
from shared.replies import ERROR, RESULT, ReplyChannel
from workers.job_end import ImmediateEnd, JobEnd, current_job_end, enter_job_end, leave_job_end


def reads(client) -> int:
    return client.info("stats")["total_reads_processed"]


def reserved(client) -> tuple[RateLimiter, object]:
    limiter = RateLimiter(client)
    limit = Limit("model:m", "model 'm'", TOKENS, MINUTE, 10_000)
    reservation = limiter.admit([limit], 500)
    limiter.reconcile(reservation, 500)  # a settlement made at once: Redis has its script from here on
    return limiter, reservation


def token_sum(client, reservation) -> int:
    return int(client.hget(reservation.limits[0].keys[1], "_sum"))


def test_the_answer_the_settlement_and_the_records_go_in_one_round_trip(client):
    limiter, reservation = reserved(client)
    channel = ReplyChannel(client, "job-1")
    client.set("record", "x")
    end = JobEnd(client)
    end.answer(lambda pipe: channel.send_result(200, b'{"ok":true}', {"n": 1}, pipe=pipe))
    end.settle(lambda pipe: limiter.reconcile(reservation, 120, pipe=pipe))
    ran = []
    end.after(lambda: ran.append(channel.read("0-0", 0)))
    assert ran == []  # nothing is written before the worker sends it
    before = reads(client)
    with client.pipeline(transaction=False) as pipe:
        check = end.queue(pipe)
        pipe.delete("record")  # the worker's records
        results = pipe.execute(raise_on_error=False)
    check(results)
    assert reads(client) - before == 2  # the pipeline, and the INFO that counts it
    replies = channel.read("0-0", 0)
    assert [r.kind for r in replies] == [RESULT] and replies[0].body == b'{"ok":true}'
    assert token_sum(client, reservation) == 120
    assert not client.exists("record")
    end.finish()
    assert [r.kind for r in ran[0]] == [RESULT]  # the hook ran after, and saw the answer


def test_a_settlement_redis_lost_the_script_of_is_made_again_on_its_own(client):
    limiter, reservation = reserved(client)
    client.script_flush()  # as after a Redis restart
    end = JobEnd(client)
    end.answer(lambda pipe: ReplyChannel(client, "job-2").send_result(200, b"{}", pipe=pipe))
    end.settle(lambda pipe: limiter.reconcile(reservation, 80, pipe=pipe))
    end.send()
    assert token_sum(client, reservation) == 80
    assert client.xlen(ReplyChannel(client, "job-2").key) == 1


def test_a_failed_settlement_is_logged_and_the_answer_still_goes(client, caplog):
    channel = ReplyChannel(client, "job-3")
    client.set("not-a-hash", "x")  # the settlement's amounts key of the wrong type: Redis refuses the script
    reservation = {"id": "r", "tokens": 5, "limits": [[TOKENS, "aigw:log", "not-a-hash"]]}
    limiter, _ = reserved(client)
    end = JobEnd(client)
    end.answer(lambda pipe: channel.send_error(UpstreamError("no"), pipe=pipe))
    end.settle(lambda pipe: limiter.reconcile(reservation, 1, pipe=pipe))
    end.send()
    assert [r.kind for r in channel.read("0-0", 0)] == [ERROR]
    assert "could not settle" in caplog.text


def test_an_answer_that_cannot_be_written_is_raised(client):
    client.set("aigw:reply:job-4", "not a stream")
    end = JobEnd(client)
    end.answer(lambda pipe: ReplyChannel(client, "job-4").send_result(200, b"{}", pipe=pipe))
    with pytest.raises(Exception, match="WRONGTYPE"):
        end.send()


def test_outside_the_gateways_worker_each_write_goes_at_once(client):
    limiter, reservation = reserved(client)
    channel = ReplyChannel(client, "job-5")
    end = current_job_end(client)
    assert isinstance(end, ImmediateEnd)
    end.answer(lambda pipe: channel.send_result(200, b"{}", pipe=pipe))
    assert client.xlen(channel.key) == 1
    end.settle(lambda pipe: limiter.reconcile(reservation, 7, pipe=pipe))
    assert token_sum(client, reservation) == 7
    ran = []
    end.after(lambda: ran.append(True))
    assert ran == [True]


def test_the_worker_s_end_is_the_current_one_while_its_job_runs(client):
    end = JobEnd(client)
    token = enter_job_end(end)
    try:
        assert current_job_end(client) is end
    finally:
        leave_job_end(token)
    assert isinstance(current_job_end(client), ImmediateEnd)
