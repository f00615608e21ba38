"""Admission, the one place a request's job is let onto its model's queue or refused,
against a real Redis (embedded): what each refusal answers and that a refused job is
never written; the queue's limit comes before the rate limits."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from api.admission import Admission, WorkerLiveness
from api.identity import Identity
from api.routing import Router
from shared.config import parse_config
from shared.errors import NoWorkers, QueueFull, RateLimited
from shared.jobs import CHAT_COMPLETIONS
from shared.ratelimit import RateLimiter, limits_for
from workers.worker_classes import ThreadedWorker

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def admission(client):
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://127.0.0.1:9/v1",
                                       "max_queue_depth": 2, "rate_limit": {"requests_per_minute": 3}}]}, {})
    return Admission(config, Router(config), RateLimiter(client), WorkerLiveness(client))


@pytest.fixture
def worker(client):
    worker = ThreadedWorker(["m"], connection=client, name="m.host.1")
    worker.register_birth()
    return worker


def request(request_id: str = "req-1", wire: str = "openai") -> SimpleNamespace:
    context = SimpleNamespace(identity=Identity("2", "alice", credential="token"), request_id=request_id, log={},
                              wire=wire)
    return SimpleNamespace(context=context)


def admit(admission, request_id: str = "req-1", wire: str = "openai"):
    return admission.admit(request(request_id, wire), endpoint=CHAT_COMPLETIONS, body=BODY)


def test_an_admitted_job_is_queued_with_the_limits_figures(admission, client, worker):
    admitted = admit(admission)
    assert client.lrange("rq:queue:m", 0, -1) == [admitted.job.job_id.encode()]
    assert admitted.model.name == "m" and admitted.job.reservation["limits"]
    assert admitted.rate_headers["x-ratelimit-limit-requests"] == "3"
    assert admitted.rate_headers["x-ratelimit-remaining-requests"] == "2"
    assert admitted.rate_headers["x-ratelimit-reset-requests"] == "1m0s"
    anthropic = admit(admission, "req-2", wire="anthropic").rate_headers
    assert anthropic["anthropic-ratelimit-requests-remaining"] == "1"


def test_a_model_without_workers_is_refused_before_any_allowance_is_taken(admission, client):
    with pytest.raises(NoWorkers):
        admit(admission)
    assert not client.keys("aigw:rl:*") and not client.keys("rq:*")


def test_a_full_queue_refuses_and_writes_nothing(admission, client, worker):
    first, second = admit(admission, "a"), admit(admission, "b")
    with pytest.raises(QueueFull) as full:
        admit(admission, "c")
    assert full.value.retry_after == 1 and "2 requests waiting" in full.value.message
    assert client.lrange("rq:queue:m", 0, -1) == [first.job.job_id.encode(), second.job.job_id.encode()]
    assert sorted(client.keys("rq:job:*")) == sorted(f"rq:job:{a.job.job_id}".encode() for a in (first, second))
    assert client.zcard("aigw:rl:model:m:requests:60:log") == 2  # the refused request took nothing


def test_a_rate_limited_request_gets_429_with_the_limit_s_headers_and_writes_nothing(admission, client, worker):
    admitted = [admit(admission, str(index)) for index in range(2)]
    client.delete("rq:queue:m")  # taken by a worker: the queue has room again
    admit(admission, "third")
    client.delete("rq:queue:m")
    req = request("fourth")
    with pytest.raises(RateLimited) as refused:
        admission.admit(req, endpoint=CHAT_COMPLETIONS, body=BODY)
    headers = refused.value.response_headers()
    assert headers["x-ratelimit-remaining-requests"] == "0" and int(headers["Retry-After"]) >= 1
    assert "model 'm'" in refused.value.message
    assert req.context.log["rate_limit_scope"] == "model:m"
    assert client.llen("rq:queue:m") == 0 and len(client.keys("rq:job:*")) == 3 == len(admitted) + 1


def test_a_full_queue_answers_before_a_limit_that_refuses(admission, client, worker):
    admit(admission, "a")
    admit(admission, "b")
    admission.limiter.admit(limits_for(admission.config.models[0], None, "2", None), 0)  # the minute's third
    with pytest.raises(QueueFull):  # the limit refuses too; the full queue is what the client hears
        admit(admission, "c")
