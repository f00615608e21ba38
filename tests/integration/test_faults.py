"""Process faults: a worker killed while it runs jobs, a host that dies, Redis restarted
under load, and graceful stops of the workers and of the web process. Real processes
throughout; Redis persists with appendonly yes and appendfsync always."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from rq import Worker
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from shared.jobs import JobRequest
from tests.harness import Process, Stack, in_background, job_id_for, wait_for, with_credential
from workers.salvage import REQUEUE_MIN_SECONDS, REQUEUED

MODEL = """
  - name: {name}
    type: generic
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: {timeout}
    workers: {workers}
    concurrency: {concurrency}"""

CONFIG = "models:" + "".join([
    MODEL.format(name="fragile", timeout="20s", workers=1, concurrency=4)
    + "\n    rate_limit: {requests_per_minute: 1000, tokens_per_minute: 1000000}",
    MODEL.format(name="twice", timeout="20s", workers=1, concurrency=2),
    MODEL.format(name="brief", timeout="5s", workers=1, concurrency=2),
    MODEL.format(name="streamy", timeout="20s", workers=1, concurrency=2),
    MODEL.format(name="held", timeout="40s", workers=1, concurrency=4),
    MODEL.format(name="orphan", timeout="20s", workers=0, concurrency=1),
    MODEL.format(name="rolling", timeout="20s", workers=0, concurrency=2),
    MODEL.format(name="steady", timeout="20s", workers=1, concurrency=8),
]) + """
jobs:
  result_ttl: 30s
  failure_ttl: 2m
"""

KILL_HANDLED_WITHIN = 5.0  # what the issue asks: a killed worker is handled within 5 s


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Short liveness intervals, so the heartbeat backstop is observable in seconds.
    with Stack(tmp_path_factory.mktemp("faults"), CONFIG, web_workers=2,
               env={"WORKER_HEARTBEAT_INTERVAL": "1", "WORKER_MAINTENANCE_INTERVAL": "2"},
               redis_options={"appendonly": True, "appendfsync": "always"}) as gateway:
        yield gateway


# -- helpers -------------------------------------------------------------------
def fetch(stack: Stack, job_id: str) -> Job:
    return Job.fetch(job_id, connection=stack.redis(), serializer=JSONSerializer)


def worker_names(stack: Stack, model: str) -> set[str]:
    return {key.decode().removeprefix("rq:worker:") for key in stack.redis().smembers(f"rq:workers:{model}")}


def the_worker(stack: Stack, model: str) -> tuple[str, int]:
    names = wait_for(lambda: worker_names(stack, model), timeout=30, message=f"a worker for {model}")
    assert len(names) == 1, names
    (name,) = names
    return name, int(name.rsplit(".", 1)[1])


def started(stack: Stack, model: str) -> StartedJobRegistry:
    return StartedJobRegistry(model, connection=stack.redis(), serializer=JSONSerializer)


def in_started_registry(stack: Stack, model: str) -> int:
    """Without RQ's clean-up of expired entries (which reading a registry runs): what is there."""
    return started(stack, model).get_job_count(cleanup=False)


def children_of(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return {int(child) for child in found}


def sse_data(text: str) -> list[dict | str]:
    events = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def streamed_text(events: list) -> str:
    return "".join(event["choices"][0]["delta"].get("content") or ""
                   for event in events if isinstance(event, dict) and event.get("choices"))


# -- a killed worker ---------------------------------------------------------------
def test_a_killed_worker_s_jobs_that_sent_nothing_are_requeued_once_and_answered(stack):
    results: dict = {}
    threads = [
        in_background(stack, results, "requeue-whole", "fragile", "[[sandbox hang times=1]] whole again"),
        in_background(stack, results, "requeue-stream", "fragile", "[[sandbox hang times=1]] stream again",
                      stream=True, stream_options={"include_usage": True}),
    ]
    wait_for(lambda: stack.sandbox_calls("requeue-whole") and stack.sandbox_calls("requeue-stream"), timeout=10,
             message="both calls to reach the provider")
    # Their start records are written once their provider requests are on the wire.
    wait_for(lambda: in_started_registry(stack, "fragile") == 2, timeout=5, message="both jobs started")
    ids = [job_id_for(stack, "requeue-whole"), job_id_for(stack, "requeue-stream")]
    name, pid = the_worker(stack, "fragile")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    def salvaged() -> bool:
        return (name not in worker_names(stack, "fragile") and not stack.redis().exists(f"rq:worker:{name}")
                and in_started_registry(stack, "fragile") == 0
                and all(REQUEUED in fetch(stack, job_id).meta for job_id in ids))

    wait_for(salvaged, timeout=KILL_HANDLED_WITHIN, interval=0.02, message="the dead worker's jobs requeued")
    assert time.monotonic() - killed < KILL_HANDLED_WITHIN
    for thread in threads:
        thread.join(30)
    whole, stream = results["requeue-whole"], results["requeue-stream"]
    assert whole.status_code == 200, whole.text
    assert whole.json()["choices"][0]["message"]["content"] == "Sandbox reply: whole again"
    assert stream.status_code == 200, stream.text
    events = sse_data(stream.text)
    assert events[-1] == "[DONE]"
    assert streamed_text(events) == "Sandbox reply: stream again"
    # The provider saw each request twice: the first run's call was cut by the kill (README: worker_lost).
    assert stack.sandbox_calls("requeue-whole") == 2
    assert stack.sandbox_calls("requeue-stream") == 2
    # Each kept the reservation it was admitted with (no second admission) and settled it once,
    # to the usage its answer reported.
    client = stack.redis()
    assert client.zcard("aigw:rl:model:fragile:requests:60:log") == 2
    usage = whole.json()["usage"]["total_tokens"] + next(
        event["usage"]["total_tokens"] for event in events if isinstance(event, dict) and event.get("usage"))
    wait_for(lambda: int(client.hget("aigw:rl:model:fragile:tokens:60:amounts", "_sum") or 0) == usage,
             timeout=10, message="the token reservations settled to the usage reported")
    amounts = client.hgetall("aigw:rl:model:fragile:tokens:60:amounts")
    assert len(amounts) == 3  # the two reservations and the running sum


def test_a_job_whose_worker_dies_twice_gets_worker_lost(stack):
    results: dict = {}
    thread = in_background(stack, results, "twice-1", "twice", "[[sandbox hang]] doomed twice")
    wait_for(lambda: stack.sandbox_calls("twice-1") == 1, timeout=10, message="the first run to call")
    wait_for(lambda: in_started_registry(stack, "twice") == 1, timeout=5, message="the first run to start")
    _, pid = the_worker(stack, "twice")
    os.kill(pid, signal.SIGKILL)
    # Requeued once, the replacement worker runs it again...
    wait_for(lambda: stack.sandbox_calls("twice-1") == 2, timeout=20, message="the requeued run to call")
    wait_for(lambda: in_started_registry(stack, "twice") == 1, timeout=5, message="the second run to start")
    _, second = the_worker(stack, "twice")
    assert second != pid
    os.kill(second, signal.SIGKILL)
    killed = time.monotonic()
    thread.join(30)
    # ...and a second death answers the client at once: never a third run.
    answer = results["twice-1"]
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "worker_lost"
    assert time.monotonic() - killed < KILL_HANDLED_WITHIN
    job_id = job_id_for(stack, "twice-1")
    failed = FailedJobRegistry("twice", connection=stack.redis(), serializer=JSONSerializer)
    # The client hears first; the records follow in the same moment.
    wait_for(lambda: job_id in failed.get_job_ids(), timeout=5, message="the job recorded failed")
    assert in_started_registry(stack, "twice") == 0
    wait_for(lambda: worker_names(stack, "twice"), timeout=20, message="a replacement worker")
    assert stack.sandbox_calls("twice-1") == 2


def test_a_job_whose_deadline_leaves_no_time_gets_worker_lost_at_once(stack):
    results: dict = {}
    thread = in_background(stack, results, "brief-1", "brief", "[[sandbox hang]] out of time")
    wait_for(lambda: stack.sandbox_calls("brief-1"), timeout=5, message="the call to reach the provider")
    deadline = JobRequest.from_dict(fetch(stack, job_id_for(stack, "brief-1")).args[0]).deadline
    # Kill once less than REQUEUE_MIN_SECONDS of its 5 s deadline is left.
    wait_for(lambda: deadline - time.time() < REQUEUE_MIN_SECONDS - 0.3, timeout=5, interval=0.02,
             message="the deadline to come close")
    _, pid = the_worker(stack, "brief")
    os.kill(pid, signal.SIGKILL)
    thread.join(15)
    answer = results["brief-1"]
    assert answer.status_code == 502, answer.text  # not the 504 its deadline would have given
    assert answer.json()["error"]["code"] == "worker_lost"
    assert time.time() < deadline  # answered before its deadline
    assert stack.sandbox_calls("brief-1") == 1


def test_a_killed_worker_s_started_stream_ends_with_an_error_event(stack):
    words = " ".join(f"w{i}" for i in range(60))
    body = {"model": "streamy", "stream": True,
            "messages": [{"role": "user", "content": f"[[sandbox chunk_delay_ms=200]] {words}"}]}
    response = requests.post(f"{stack.url}/v1/chat/completions", json=body, stream=True, timeout=30,
                             headers=with_credential({"X-Request-Id": "stream-killed"}))
    assert response.status_code == 200
    lines = response.iter_lines()
    seen = []
    for line in lines:  # until the client has some of the answer's text
        seen.append(line)
        if streamed_text(sse_data(line.decode())):
            break
    _, pid = the_worker(stack, "streamy")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    seen += list(lines)
    assert time.monotonic() - killed < KILL_HANDLED_WITHIN
    events = sse_data(b"\n".join(seen).decode())
    assert "[DONE]" not in events
    assert events[-1]["error"]["code"] == "worker_lost"
    partial = streamed_text(events[:-1])  # the part the client had, cut short
    assert partial and f"Sandbox reply: {words}".startswith(partial) and not partial.endswith("w59")
    job_id = job_id_for(stack, "stream-killed")
    failed = FailedJobRegistry("streamy", connection=stack.redis(), serializer=JSONSerializer)
    wait_for(lambda: job_id in failed.get_job_ids(), timeout=5, message="the job recorded failed")
    assert REQUEUED not in fetch(stack, job_id).meta
    assert in_started_registry(stack, "streamy") == 0
    assert stack.sandbox_calls("stream-killed") == 1


def test_a_host_that_dies_is_caught_by_heartbeat_expiry(stack, tmp_path):
    """Supervisor and worker killed together, as when their host dies: the other host's
    worker fails the job (RQ's clean-up of expired started entries) and answers its client."""
    hosts = [Process(f"host-{tag}", [sys.executable, "-m", "workers", "orphan"], stack.env,
                     tmp_path / f"host-{tag}.log") for tag in "ab"]
    try:
        wait_for(lambda: len(worker_names(stack, "orphan")) == 2, timeout=30, message="two orphan workers")
        results: dict = {}
        thread = in_background(stack, results, "orphan-1", "orphan", "[[sandbox hang]] lost host")
        wait_for(lambda: stack.sandbox_calls("orphan-1"), timeout=10, message="the job to start")
        job = fetch(stack, job_id_for(stack, "orphan-1"))
        running_on = int(wait_for(lambda: fetch(stack, job.id).worker_name, timeout=5,
                                  message="the job's start record").rsplit(".", 1)[1])
        (host,) = [h for h in hosts if running_on in children_of(h.pid)]
        host.signal(signal.SIGKILL, group=True)
        killed = time.monotonic()
        thread.join(30)
        answer = results["orphan-1"]
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "worker_lost"
        assert time.monotonic() - killed < 15  # the heartbeat's time to live and a maintenance pass
        failed = FailedJobRegistry("orphan", connection=stack.redis(), serializer=JSONSerializer)
        wait_for(lambda: job.id in failed.get_job_ids(), timeout=5, message="the job recorded failed")
        assert in_started_registry(stack, "orphan") == 0
        assert stack.sandbox_calls("orphan-1") == 1
    finally:
        for host in hosts:
            host.stop()


# -- Redis restarted ------------------------------------------------------------------
def test_redis_restarted_while_jobs_wait_loses_none_and_runs_none_twice(stack):
    workers_before = children_of(stack.workers.pid)
    log_before = len(stack.workers.log())
    client = stack.redis()
    suspend(client)  # `rq suspend`: the jobs stay queued through the restart
    try:
        def held_suspended() -> bool:
            found = Worker.all(connection=client, queue=Queue("held", connection=client))
            return bool(found) and all(worker.get_state() == "suspended" for worker in found)

        wait_for(held_suspended, timeout=10, message="the held worker to notice the suspension")
        results: dict = {}
        names = [f"held-{i}" for i in range(3)]
        threads = [in_background(stack, results, name, "held", f"survive {name}") for name in names]
        threads.append(in_background(stack, results, "held-stream", "held", "survive streaming", stream=True))
        names.append("held-stream")
        wait_for(lambda: client.llen("rq:queue:held") == 4, timeout=10, message="four queued jobs")
        stack.redis_server.kill(crash=True)
        down = time.monotonic()
        # While Redis is gone: new requests are refused at once...
        refused = stack.chat("steady", "while Redis is down", timeout=20)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "service_unavailable"
        # ...and those already waiting keep waiting.
        wait_for(lambda: time.monotonic() - down > 2.0, timeout=5, message="a two-second outage")
        assert not results and all(thread.is_alive() for thread in threads)
        stack.redis_server.start_again()
        assert stack.redis().llen("rq:queue:held") == 4  # on disk before it was acknowledged
    finally:
        if stack.redis_server.process is None:
            stack.redis_server.start_again()
        resume(stack.redis())
    for thread in threads:
        thread.join(45)
    for name in names:
        answer = results[name]
        assert answer.status_code == 200, (name, answer)
        assert stack.sandbox_calls(name) == 1, name  # served once, never twice
    assert results["held-0"].json()["choices"][0]["message"]["content"] == "Sandbox reply: survive held-0"
    assert sse_data(results["held-stream"].text)[-1] == "[DONE]"
    # The workers rode the outage out: same processes, none restarted.
    assert children_of(stack.workers.pid) == workers_before
    assert "worker process exited" not in stack.workers.log()[log_before:]
    # And the API took new requests again without a restart.
    wait_for(lambda: stack.chat("steady", "after the restart", timeout=20).status_code == 200, timeout=15,
             interval=0.5, message="a request answered after the restart")


# -- graceful stops ------------------------------------------------------------------
def test_a_rolling_restart_of_the_workers_loses_no_admitted_request(stack, tmp_path):
    old = Process("rolling-old", [sys.executable, "-m", "workers", "rolling"], stack.env, tmp_path / "old.log")
    new = None
    try:
        wait_for(lambda: worker_names(stack, "rolling"), timeout=30, message="the old worker")
        results: dict = {}
        threads = [in_background(stack, results, f"roll-running-{i}", "rolling",
                                 f"[[sandbox delay_ms=2000]] running {i}") for i in range(2)]
        wait_for(lambda: all(stack.sandbox_calls(f"roll-running-{i}") for i in range(2)), timeout=10,
                 message="two running jobs")
        threads += [in_background(stack, results, f"roll-queued-{i}", "rolling", f"queued {i}") for i in range(3)]
        wait_for(lambda: stack.redis().llen("rq:queue:rolling") == 3, timeout=10, message="three queued jobs")
        old.signal(signal.SIGTERM)  # what a rolling restart does: stop the old, start the new
        new = Process("rolling-new", [sys.executable, "-m", "workers", "rolling"], stack.env,
                      tmp_path / "new.log")
        during = []
        for i in range(4):  # requests arriving while the old drains and the new starts
            during.append(f"roll-during-{i}")
            threads.append(in_background(stack, results, during[-1], "rolling", f"during {i}"))
            time.sleep(0.3)
        for thread in threads:
            thread.join(30)
        assert old.wait(timeout=15) == 0
        for name in [f"roll-running-{i}" for i in range(2)] + [f"roll-queued-{i}" for i in range(3)]:
            assert results[name].status_code == 200, (name, results[name].text)
            assert stack.sandbox_calls(name) == 1, name
        for name in during:
            answer = results[name]
            if answer.status_code == 503:  # not admitted: no live worker at that moment, never queued
                assert answer.json()["error"]["code"] == "no_workers"
                assert stack.sandbox_calls(name) == 0
            else:
                assert answer.status_code == 200, (name, answer.text)
                assert stack.sandbox_calls(name) == 1
    finally:
        old.stop()
        if new is not None:
            new.stop()


def test_sigterm_to_the_web_answers_every_admitted_request(stack):
    """Last in this module: the web process does not come back. Admitted means accepted by a
    web worker process before the signal: each gets its whole answer; a connection attempted
    after it is refused, never half-served."""
    results: dict = {}
    threads = [in_background(stack, results, f"web-whole-{i}", "steady", f"[[sandbox delay_ms=2500]] whole {i}")
               for i in range(4)]
    words = " ".join(f"s{i}" for i in range(10))
    threads += [in_background(stack, results, f"web-stream-{i}", "steady",
                              f"[[sandbox chunk_delay_ms=250]] {words}", stream=True) for i in range(2)]
    names = [f"web-whole-{i}" for i in range(4)] + [f"web-stream-{i}" for i in range(2)]
    wait_for(lambda: all(stack.sandbox_calls(name) for name in names), timeout=10, message="six calls under way")
    stack.web.signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", stack.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    # Refused at once, while the admitted requests are still being answered: not held in the
    # listening socket's backlog until the workers have drained.
    wait_for(refused, timeout=5, message="new connections to be refused")
    assert any(thread.is_alive() for thread in threads)
    with pytest.raises(requests.ConnectionError):
        stack.chat("steady", "too late", timeout=30, headers={"X-Request-Id": "web-late"})
    for thread in threads:
        thread.join(30)
    for i in range(4):
        answer = results[f"web-whole-{i}"]
        assert answer.status_code == 200, answer
        assert answer.json()["choices"][0]["message"]["content"] == f"Sandbox reply: whole {i}"
    for i in range(2):
        answer = results[f"web-stream-{i}"]
        assert answer.status_code == 200, answer
        events = sse_data(answer.text)
        assert events[-1] == "[DONE]"
        assert streamed_text(events) == f"Sandbox reply: {words}"
    assert stack.sandbox_calls("web-late") == 0
    assert stack.web.wait(timeout=30) == 0
