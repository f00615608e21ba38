"""What a reload of ``python -m workers`` decides: which models get how many processes
(workers.selection) and what happens to the jobs a removed model leaves behind (workers.retire,
against a real Redis)."""

from __future__ import annotations

import time

from rq import Queue

from shared import keys, rq_records
from shared.config import parse_config
from shared.jobs import JobRequest
from shared.replies import ReplyChannel
from shared.serializers import JobSerializer
from tests.unit.test_rq_records import a_worker, enqueue
from workers.retire import answer_left_behind
from workers.selection import Selection

QUEUE = "m"  # the queue test_rq_records' helpers use


def config(*models: tuple[str, int]):
    return parse_config({"models": [{"name": name, "type": "generic", "base_url": "http://llm.internal/v1",
                                     "workers": workers, "concurrency": 8} for name, workers in models],
                         "routes": []}, {})


def test_without_a_model_list_every_model_is_planned_with_its_own_count():
    plan = Selection().plan(config(("a", 2), ("b", 0), ("c", 1)))
    assert plan == {"a": (2, 8), "b": (0, 8), "c": (1, 8)}


def test_a_model_list_plans_only_those_and_at_least_one_process_each():
    selection = Selection(named=("b", "gone"))
    assert selection.plan(config(("a", 2), ("b", 0))) == {"b": (1, 8)}
    # a reload that adds a model the list did not name leaves it to whoever serves it
    assert selection.plan(config(("a", 2), ("b", 3), ("new", 1))) == {"b": (3, 8)}


def test_processes_and_concurrency_from_the_command_line_win():
    assert Selection(processes=3, concurrency=2).plan(config(("a", 1), ("b", 0))) == {"a": (3, 2), "b": (3, 2)}


def a_request(job_id: str) -> JobRequest:
    return JobRequest(job_id=job_id, request_id=f"req-{job_id}", model=QUEUE, requested_model=QUEUE,
                      endpoint="chat.completions", body={"model": QUEUE, "messages": []},
                      deadline=time.time() + 30, caller={"user_id": "1"})


def test_jobs_left_on_a_removed_model_s_queue_are_answered_503(client):
    enqueue(client, a_request("left-1"))
    enqueue(client, a_request("left-2"))
    assert answer_left_behind(client, QUEUE, model=QUEUE, reply_ttl=30) == ["left-1", "left-2"]
    for job_id in ("left-1", "left-2"):
        (reply,) = ReplyChannel(client, job_id).read("0", block_ms=0)
        assert reply.final and reply.status == 503
        assert reply.error.code == "service_unavailable"
        assert "was removed from the gateway's configuration" in reply.error.message
        assert not client.exists(keys.rq_job_key(job_id))
    assert rq_records.queue_depth(client, QUEUE) == 0


def test_a_queue_a_live_worker_serves_is_left_to_it(client):
    a_worker(client)  # another host's worker still serves the queue
    enqueue(client, a_request("served"))
    assert answer_left_behind(client, QUEUE, model=QUEUE, reply_ttl=30) == []
    assert rq_records.queue_depth(client, QUEUE) == 1


def test_a_job_not_the_gateway_s_is_left_alone(client):
    job = Queue(QUEUE, connection=client, serializer=JobSerializer).enqueue("os.getcwd")
    assert answer_left_behind(client, QUEUE, model=QUEUE, reply_ttl=30) == []
    assert rq_records.waiting_jobs(client, QUEUE) == [job.id]


def test_the_supervisor_answers_a_removed_model_s_queue_for_a_while_after_its_last_worker(client, redis_server):
    from shared.settings import Settings
    from workers import supervisor

    boss = supervisor.Supervisor(Settings(redis_url=redis_server.url), config((QUEUE, 0)), Selection())
    boss.removed[QUEUE] = time.monotonic()
    enqueue(client, a_request("before"))
    boss._answer_removed()
    assert rq_records.queue_depth(client, QUEUE) == 0 and QUEUE in boss.removed
    enqueue(client, a_request("admitted-late"))  # by a web process that still counted the last worker
    boss._answer_removed()
    (reply,) = ReplyChannel(client, "admitted-late").read("0", block_ms=0)
    assert reply.status == 503
    boss.gone[QUEUE] -= supervisor.LEFT_BEHIND_WINDOW
    boss._answer_removed()
    assert QUEUE not in boss.removed and QUEUE not in boss.gone
