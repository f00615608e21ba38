"""The sliding-log limiter against a real Redis (embedded), and its header formats."""

from __future__ import annotations

import time

import pytest

from api.rate_headers import headers_for, openai_duration
from shared import ratelimit
from shared.ratelimit import (
    DAY,
    MINUTE,
    REQUESTS,
    TOKENS,
    Limit,
    OverLimit,
    RateLimiter,
    Reservation,
    WriteRefused,
    estimate_tokens,
    text_length,
)
from shared.ratelimit_scripts import PENDING_SWEEP
from shared.rq_records import JobEnqueue


@pytest.fixture
def limiter(client, monkeypatch):
    monkeypatch.setattr(ratelimit, "WINDOW_SCALE", 0.01)  # a minute is 0.6 s
    return RateLimiter(client)


def req_limit(scope: str, n: int, period: int = MINUTE) -> Limit:
    return Limit(scope, f"'{scope}'", REQUESTS, period, n)


def tok_limit(scope: str, n: int) -> Limit:
    return Limit(scope, f"'{scope}'", TOKENS, MINUTE, n)


def test_admits_exactly_n_in_a_window_then_again_after_it_slides(limiter):
    limit = req_limit("a", 3)
    for expected_remaining in (2, 1, 0):
        assert limiter.admit([limit], 0).figures[0].remaining == expected_remaining
    with pytest.raises(OverLimit) as refused:
        limiter.admit([limit], 0)
    assert 0 < refused.value.retry_after <= 0.6
    time.sleep(refused.value.retry_after + 0.05)  # the window slides with time: the point of the test
    # The three were admitted together, so they left the window together.
    assert limiter.admit([limit], 0).figures[0].remaining == 2


def admit_for(limiter, limit: Limit, seconds: float, pause: float) -> tuple[list[float], list[OverLimit]]:
    """Ask ``limit`` for one request every ``pause`` seconds for ``seconds``: when each admitted
    one was admitted (this host's clock), and each refusal."""
    admitted, refusals = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            limiter.admit([limit], 0)
            admitted.append(time.monotonic())
        except OverLimit as refused:
            refusals.append(refused)
        time.sleep(pause)
    return admitted, refusals


def most_in_any_span(admitted: list[float], span: float) -> int:
    return max((sum(1 for other in admitted[i:] if other - at < span) for i, at in enumerate(admitted)), default=0)


def test_a_rolling_window_never_admits_double_across_a_boundary(limiter):
    admitted, _ = admit_for(limiter, req_limit("b", 4), 1.5, 0.005)  # two and a half windows of 0.6 s
    assert most_in_any_span(admitted, 0.58) <= 4  # any 0.6 s span holds at most 4 admissions
    assert len(admitted) >= 8


def test_all_or_nothing_across_limits(limiter):
    wide, narrow = req_limit("wide", 10), req_limit("narrow", 1)
    limiter.admit([wide, narrow], 0)
    with pytest.raises(OverLimit) as refused:
        limiter.admit([wide, narrow], 0)
    assert refused.value.limit == narrow
    assert limiter.redis.zcard(wide.keys[0]) == 1  # the refusal took nothing from "wide"


def test_tokens_reserve_refund_and_reconcile(limiter):
    budget = tok_limit("t", 100)
    first = limiter.admit([budget], 60)
    assert first.figures[0].remaining == 40
    with pytest.raises(OverLimit):
        limiter.admit([budget], 50)
    limiter.reconcile(first, 20)  # the real usage was smaller: 40 back
    second = limiter.admit([budget], 50)
    assert second.figures[0].remaining == 30
    limiter.refund(second)  # never reached the provider
    assert int(limiter.redis.hget(budget.keys[1], "_sum")) == 20
    limiter.reconcile(first, 130)  # an overdraw is allowed...
    with pytest.raises(OverLimit):
        limiter.admit([budget], 1)  # ...and refuses what follows until the window slides


def test_a_request_bigger_than_the_limit_is_never_admissible(limiter):
    with pytest.raises(OverLimit) as refused:
        limiter.admit([tok_limit("small", 10)], 11)
    assert refused.value.retry_after is None


def test_refund_takes_back_the_request_count(limiter):
    limit = req_limit("r", 1)
    reservation = limiter.admit([limit], 0)
    limiter.refund(reservation.to_dict())  # as the worker does, from the job payload
    limiter.admit([limit], 0)


def test_a_settlement_after_redis_lost_its_scripts_loads_it_again(limiter):
    budget = tok_limit("f", 100)
    reservation = limiter.admit([budget], 60)
    limiter.redis.script_flush()  # Redis restarted, say
    limiter.reconcile(reservation, 20)
    assert int(limiter.redis.hget(budget.keys[1], "_sum")) == 20


def enqueue_admitted(limiter, reservation, job_id: str, max_depth: int = 10):
    """As the admission does: the rate limits and the job's writes (``shared.rq_records``) in one script."""
    enqueue = JobEnqueue(["queue", f"job:{job_id}"], [job_id, max_depth, 90, "status", "queued", "origin", "queue"])
    return Reservation(reservation.id, reservation.limits, reservation.tokens, limiter.take(reservation, enqueue))


def test_an_admitted_job_is_saved_with_its_expiry_and_pushed(limiter):
    enqueue_admitted(limiter, Reservation("r1", [req_limit("saved", 5)], 0), "j1")
    assert limiter.redis.hgetall("job:j1") == {b"status": b"queued", b"origin": b"queue"}
    assert 0 < limiter.redis.ttl("job:j1") <= 90
    assert limiter.redis.lrange("queue", 0, -1) == [b"j1"]


def test_queued_admission_keeps_an_admitted_job_and_writes_nothing_for_a_refused_one(limiter):
    limit = req_limit("q", 1)
    admitted = enqueue_admitted(limiter, Reservation("r1", [limit], 0), "j1")
    assert admitted.figures[0].remaining == 0
    with pytest.raises(OverLimit):
        enqueue_admitted(limiter, Reservation("r2", [limit], 0), "j2")
    assert limiter.redis.lrange("queue", 0, -1) == [b"j1"]
    assert limiter.redis.exists("job:j1") and not limiter.redis.exists("job:j2")


def test_queued_admission_refuses_a_full_queue_before_taking_any_allowance(limiter):
    limit = req_limit("full", 5)
    for index in range(2):
        enqueue_admitted(limiter, Reservation(f"r{index}", [limit], 0), f"j{index}", max_depth=2)
    with pytest.raises(WriteRefused) as full:
        enqueue_admitted(limiter, Reservation("r2", [limit], 0), "j2", max_depth=2)
    assert full.value.answer == 2  # the queue's depth
    assert limiter.redis.lrange("queue", 0, -1) == [b"j0", b"j1"] and not limiter.redis.exists("job:j2")
    assert limiter.redis.zcard(limit.keys[0]) == 2  # the refused job took nothing


def test_queued_admission_loads_its_script_again_after_redis_lost_it(limiter):
    enqueue_admitted(limiter, Reservation("r0", [req_limit("flush", 5)], 0), "j0")
    limiter.redis.script_flush()
    enqueue_admitted(limiter, Reservation("r1", [req_limit("flush", 5)], 0), "j1")
    assert limiter.redis.lrange("queue", 0, -1) == [b"j0", b"j1"]


def test_queued_admission_without_limits_still_checks_the_queue(limiter):
    enqueue_admitted(limiter, Reservation("r0", [], 0), "j0", max_depth=1)
    with pytest.raises(WriteRefused):
        enqueue_admitted(limiter, Reservation("r1", [], 0), "j1", max_depth=1)


def test_day_windows_are_separate_keys(limiter):
    assert req_limit("d", 5, DAY).keys != req_limit("d", 5, MINUTE).keys


def test_estimate_counts_prompt_and_max_tokens():
    body = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 7}
    assert estimate_tokens(body, 1024) >= 100 + 7
    assert estimate_tokens({"messages": []}, 1024) == 1024  # no prompt: the model's default output


def test_text_length_counts_strings_keys_and_scalars():
    assert text_length({"role": "user", "content": [{"type": "text", "text": "hello"}]}) == 4 + 4 + 7 + 4 + 4 + 4 + 5
    assert text_length([None, 1, True, "ab"]) == 4 + 4 + 2


def test_a_deeply_nested_value_is_measured_without_recursion():
    deep = current = []
    for _ in range(100_000):  # a tool schema nested past any recursion limit
        current.append([])
        current = current[0]
    current.append("x" * 40)
    assert text_length(deep) == 40
    assert estimate_tokens({"tools": deep, "max_tokens": 1}, 1024) == 10 + 1


@pytest.mark.parametrize(("ms", "text"), [(0, "0ms"), (250, "250ms"), (1000, "1s"), (1500, "1.5s"),
                                          (60_000, "1m0s"), (360_000, "6m0s"), (3_723_000, "1h2m3s")])
def test_openai_durations(ms, text):
    assert openai_duration(ms) == text


def test_headers_show_the_tightest_limit_in_each_wire_format():
    figures = [ratelimit.Figure(req_limit("model", 100), 10, 5000), ratelimit.Figure(req_limit("route", 5), 4, 2000),
               ratelimit.Figure(tok_limit("route", 1000), 300, 60_000)]
    openai = headers_for(figures, "openai")
    assert (openai["x-ratelimit-limit-requests"], openai["x-ratelimit-remaining-requests"]) == ("5", "1")
    assert openai["x-ratelimit-reset-requests"] == "2s"
    assert openai["x-ratelimit-remaining-tokens"] == "700"
    anthropic = headers_for(figures, "anthropic")
    assert anthropic["anthropic-ratelimit-requests-remaining"] == "1"
    assert anthropic["anthropic-ratelimit-tokens-reset"].endswith("Z")


def test_a_scope_s_requests_and_tokens_limits_count_one_log(limiter):
    requests, tokens = req_limit("one", 10), tok_limit("one", 1000)
    assert requests.keys[0] == tokens.keys[0]  # the log of the scope's admissions in the minute
    reservation = limiter.admit([requests, tokens], 100)
    assert limiter.redis.zcard(requests.keys[0]) == 1
    assert limiter.redis.hgetall(tokens.keys[1]) == {reservation.id.encode(): b"100", b"_sum": b"100"}
    limiter.refund(reservation)  # both limits name the log: it goes once, with its amount
    assert limiter.redis.zcard(requests.keys[0]) == 0
    assert limiter.redis.hgetall(tokens.keys[1]) == {b"_sum": b"0"}


def test_many_admissions_leaving_the_window_at_once_all_leave_it(limiter):
    requests, tokens = req_limit("many", 100), tok_limit("many", 10_000)
    for _ in range(40):  # more than one read of a log's oldest entries takes
        limiter.admit([requests, tokens], 10)
    time.sleep(0.65)  # the window slides past all of them: the point of the test
    figures = limiter.admit([requests, tokens], 10).figures
    assert [figure.used for figure in figures] == [1, 10]
    assert limiter.redis.zcard(requests.keys[0]) == 1
    assert len(limiter.redis.hgetall(tokens.keys[1])) == 2  # the new admission and the sum


def test_amounts_left_without_a_log_are_dropped(limiter):
    tokens = tok_limit("orphans", 100)
    limiter.redis.hset(tokens.keys[1], mapping={"gone": 90, "_sum": 90})  # their log expired (or never was)
    assert limiter.admit([tokens], 50).figures[0].used == 50
    assert limiter.redis.hget(tokens.keys[1], "gone") is None


def test_the_reset_is_when_the_oldest_admission_leaves_and_a_token_refusal_says_when_it_fits(limiter):
    tokens = tok_limit("when", 100)
    limiter.admit([tokens], 60)
    time.sleep(0.2)
    second = limiter.admit([tokens], 30)
    assert 0 < second.figures[0].reset_ms <= 400  # the first admission leaves 0.6 s after it came, not the second
    with pytest.raises(OverLimit) as refused:
        limiter.admit([tokens], 50)  # fits once the first one's 60 have left
    assert 0 < refused.value.retry_after <= 0.4  # when the first admission leaves
    assert refused.value.figures[0].used == 100


@pytest.fixture
def day_limiter(client, monkeypatch):
    monkeypatch.setattr(ratelimit, "WINDOW_SCALE", 1e-5)  # a day is 0.864 s, its buckets 3 ms
    return RateLimiter(client)


def test_a_day_window_keeps_buckets_not_admissions(day_limiter):
    limit = req_limit("daily", 10_000, DAY)
    log, counts = limit.keys
    reservations = [day_limiter.admit([limit], 0) for _ in range(300)]
    assert reservations[-1].figures[0].used == 300
    buckets = day_limiter.redis.zcard(log)
    assert 1 <= buckets < 300  # many admissions share a bucket: what is stored does not grow with them
    for reservation in reservations:
        day_limiter.reconcile(reservation, 50)  # the job settled: its bucket need not be kept for a refund
    stored = day_limiter.redis.hgetall(counts)
    assert len(stored) == buckets + 1  # each bucket's count, and their sum
    assert int(stored[b"_sum"]) == 300 == sum(int(v) for k, v in stored.items() if k != b"_sum")
    assert day_limiter.admit([limit], 0).figures[0].used == 301  # settled admissions still count


def test_a_day_window_never_admits_more_than_its_limit_in_any_rolling_day(day_limiter):
    admitted, refusals = admit_for(day_limiter, req_limit("rolling", 4, DAY), 2.2, 0.002)  # 2.5 days of 0.864 s
    assert refusals and all(0 < refused.retry_after <= 0.867 + 0.05 for refused in refusals)  # a day and a bucket
    assert most_in_any_span(admitted, 0.85) <= 4  # any span of a day holds at most 4 admissions
    assert len(admitted) >= 8  # and the window slid: more were admitted over time


def test_a_refund_gives_a_day_admission_back_to_its_bucket(day_limiter):
    limit = req_limit("back", 2, DAY)
    log, counts = limit.keys
    first = day_limiter.admit([limit], 0)
    day_limiter.admit([limit], 0)
    with pytest.raises(OverLimit):
        day_limiter.admit([limit], 0)
    bucket = day_limiter.redis.hget(counts, f"p:{first.id}")
    before = int(day_limiter.redis.hget(counts, bucket))
    day_limiter.refund(first.to_dict())  # as the worker does, from the job payload
    assert int(day_limiter.redis.hget(counts, bucket)) == before - 1
    assert day_limiter.redis.hget(counts, f"p:{first.id}") is None
    assert day_limiter.admit([limit], 0).figures[0].used == 2
    day_limiter.refund(first.to_dict())  # settled already: nothing more is given back
    with pytest.raises(OverLimit):
        day_limiter.admit([limit], 0)


def test_a_day_admission_never_settled_is_swept_after_an_hour_of_its_day(day_limiter):
    limit = req_limit("lost", 10, DAY)
    log, counts = limit.keys
    day_limiter.admit([limit], 0)
    # Admissions whose jobs never settled, from more than an hour of the day ago (bucket 1).
    day_limiter.redis.hset(counts, mapping={f"p:lost{i}": "1" for i in range(PENDING_SWEEP)})
    time.sleep(0.01)  # the next admission opens a new bucket, which sweeps
    pending = day_limiter.admit([limit], 0)
    assert not [k for k in day_limiter.redis.hkeys(counts) if k.startswith(b"p:lost")]
    assert day_limiter.redis.hget(counts, f"p:{pending.id}") is not None  # one still to settle stays
    assert day_limiter.admit([limit], 0).figures[0].used == 3


def test_keeping_an_estimate_drops_only_what_a_day_kept_for_a_refund(day_limiter):
    per_day, tokens = req_limit("kept", 10, DAY), tok_limit("kept", 1000)
    reservation = day_limiter.admit([per_day, tokens], 100)
    counts = per_day.keys[1]
    assert day_limiter.redis.hexists(counts, f"p:{reservation.id}")
    day_limiter.keep(reservation.to_dict())  # a success whose provider reported no usage
    assert not day_limiter.redis.hexists(counts, f"p:{reservation.id}")
    assert int(day_limiter.redis.hget(counts, "_sum")) == 1
    assert int(day_limiter.redis.hget(tokens.keys[1], "_sum")) == 100  # the estimate stays
    day_limiter.refund(reservation.to_dict())  # too late to find its bucket: the day keeps counting it
    assert int(day_limiter.redis.hget(counts, "_sum")) == 1
