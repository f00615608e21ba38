"""The threaded RQ worker: many jobs per process with RQ's promises intact."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import requests
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from tests.harness import Process, Stack, in_background, job_id_for, wait_for
from tools.embedded_redis import free_port

CONFIG = """
models:
  - name: pool
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
    concurrency: 4
  - name: pair
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 2
    concurrency: 1
  - name: jobs
    type: generic
    base_url: "{sandbox}/v1"
    timeout: 10s
    workers: 1
    concurrency: 4
  - name: stopping
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 4s
    workers: 0
    concurrency: 1
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Short liveness intervals, so heartbeats and maintenance are observable in seconds.
    with Stack(tmp_path_factory.mktemp("workers"), CONFIG,
               env={"WORKER_HEARTBEAT_INTERVAL": "1", "WORKER_MAINTENANCE_INTERVAL": "2"}) as gateway:
        yield gateway


def queue(stack: Stack, name: str) -> Queue:
    return Queue(name, connection=stack.redis(), serializer=JSONSerializer)


def worker_pids(stack: Stack, model: str) -> set[int]:
    names = stack.redis().smembers(f"rq:workers:{model}")
    return {int(name.decode().rsplit(".", 1)[1]) for name in names}


def test_one_process_runs_jobs_at_once_and_shows_busy(stack):
    results: dict = {}
    started = time.monotonic()
    threads = [in_background(stack, results, f"many-{i}", "pool", "[[sandbox delay_ms=1500]] together")
               for i in range(4)]
    wait_for(lambda: StartedJobRegistry("pool", connection=stack.redis()).count == 4, timeout=5,
             message="four jobs running in the one worker")
    # Their start records went out with their provider calls: while the calls run, RQ sees them started.
    running = Job.fetch(job_id_for(stack, "many-0"), connection=stack.redis(), serializer=JSONSerializer)
    assert running.get_status() == "started"
    assert (running.worker_name or "").startswith("pool.")
    info = subprocess.run([sys.executable, "-m", "rq.cli", "info", "-u", stack.redis_server.url, "-S", "json"],
                          capture_output=True, text=True, timeout=30)
    worker_line = next(line for line in info.stdout.splitlines() if line.startswith("pool."))
    assert "busy" in worker_line
    for thread in threads:
        thread.join(15)
    assert all(results[f"many-{i}"].status_code == 200 for i in range(4))
    assert time.monotonic() - started < 3.0  # one after another would take 6 s
    assert len(worker_pids(stack, "pool")) == 1


def test_rq_dashboard_shows_the_busy_worker(stack, tmp_path):
    port = free_port()
    dashboard = Process("dashboard", [sys.executable, "-m", "tools.rq_dashboard", "--redis-url",
                                      stack.redis_server.url, "--bind", "127.0.0.1", "--port", str(port),
                                      "--username", "ops", "--password", "secret"],
                        stack.env, tmp_path / "dashboard.log")
    results: dict = {}
    thread = in_background(stack, results, "dash-1", "pool", "[[sandbox delay_ms=2000]] watch me")
    try:
        url = f"http://127.0.0.1:{port}/0/data/workers.json"
        wait_for(lambda: _answers(url), timeout=30, message="rq-dashboard to listen")
        assert requests.get(url, timeout=5).status_code == 401  # no credentials, no data

        def busy_pool_worker():
            # A worker shows busy from its job's first monitor tick, and the job's start is
            # recorded a tick later (rq_records, START_RECORD_AFTER): until then rq-dashboard
            # says "idle" for its current job, so the look repeats until both show.
            workers = requests.get(url, auth=("ops", "secret"), timeout=5).json()["workers"]
            return [w for w in workers if w["queues"] == ["pool"] and w["state"] == "busy"
                    and isinstance(w["current_job"], dict)]

        busy = wait_for(busy_pool_worker, timeout=10, message="the dashboard to show the pool worker busy with its job")
        assert busy[0]["current_job"]["description"].endswith("request_id=dash-1")
        # Read-only: its actions (no CSRF protection; requeue-all even by GET) are refused.
        base = f"http://127.0.0.1:{port}"
        for method, path in (("GET", "/requeue/pool"), ("POST", "/requeue/pool"),
                             ("POST", "/queue/pool/failed/empty"), ("POST", "/queue/pool/compact")):
            refused = requests.request(method, base + path, auth=("ops", "secret"), timeout=5)
            assert refused.status_code == 403 and "read-only" in refused.text, (method, path)
    finally:
        thread.join(15)
        dashboard.stop()
    assert results["dash-1"].status_code == 200


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=1)
        return True
    except requests.RequestException:
        return False


def test_a_job_never_waits_behind_a_busy_worker(stack):
    results: dict = {}
    slow = in_background(stack, results, "busy-a", "pair", "[[sandbox delay_ms=2000]] slow")
    wait_for(lambda: stack.sandbox_calls("busy-a"), timeout=5, message="the slow job to start")
    started = time.monotonic()
    quick = stack.chat("pair", "quick", headers={"X-Request-Id": "busy-b"})
    assert quick.status_code == 200
    assert time.monotonic() - started < 1.5  # served by the idle worker, not queued behind the slow one
    slow.join(15)
    assert results["busy-a"].status_code == 200


def test_registries_stay_true_and_failures_stay_readable(stack):
    """A delivered answer leaves no RQ record (shared.rq_records: its reply stream carried it,
    and nobody reads a finished registry or a result); a failure is recorded as RQ records one."""
    results_before = set(stack.redis().scan_iter("rq:results:*"))
    answers = {
        "reg-ok-1": stack.chat("pool", "one", headers={"X-Request-Id": "reg-ok-1"}),
        "reg-ok-2": stack.chat("pool", "two", headers={"X-Request-Id": "reg-ok-2"}),
        "reg-400": stack.chat("pool", "[[sandbox fail=400]] bad", headers={"X-Request-Id": "reg-400"}),
        "reg-503": stack.chat("pool", "[[sandbox fail=503]] down", headers={"X-Request-Id": "reg-503"}),
    }
    assert [a.status_code for a in answers.values()] == [200, 200, 400, 502]
    broken_id = job_id_for(stack, "reg-503")
    client = stack.redis()
    started = StartedJobRegistry("pool", connection=client, serializer=JSONSerializer)
    wait_for(lambda: started.count == 0, timeout=10, message="the started registry to empty")
    failed = set(FailedJobRegistry("pool", connection=client, serializer=JSONSerializer).get_job_ids())
    assert broken_id in failed and len(failed) == 1
    assert FinishedJobRegistry("pool", connection=client, serializer=JSONSerializer).count == 0

    def delivered_jobs_left() -> list[bytes]:
        return [key for key in client.scan_iter("rq:job:*") if client.type(key) == b"hash"
                and (client.hget(key, "description") or b"").split(b"request_id=")[-1]
                in (b"reg-ok-1", b"reg-ok-2", b"reg-400")]

    wait_for(lambda: not delivered_jobs_left(), timeout=10, message="the delivered jobs' records removed")
    assert set(client.scan_iter("rq:results:*")) - results_before == {f"rq:results:{broken_id}".encode()}
    broken = Job.fetch(broken_id, connection=client, serializer=JSONSerializer).latest_result()
    assert broken.type == Result.Type.FAILED
    assert "upstream_error" in broken.exc_string


def test_finished_and_failed_registries_empty_out_after_their_ttls(stack):
    jobs_queue = queue(stack, "jobs")
    done = jobs_queue.enqueue("tests.integration.rq_jobs.report", 0.0, result_ttl=1)
    broken = jobs_queue.enqueue("tests.integration.rq_jobs.fail", "on purpose", failure_ttl=1)
    assert done.latest_result(timeout=5).type == Result.Type.SUCCESSFUL
    assert broken.latest_result(timeout=5).type == Result.Type.FAILED
    client = stack.redis()
    finished = FinishedJobRegistry("jobs", connection=client, serializer=JSONSerializer)
    failed = FailedJobRegistry("jobs", connection=client, serializer=JSONSerializer)

    def raw_members(registry) -> set[str]:  # without the clean-up that reading a registry runs
        return {member.decode() for member in client.zrange(registry.key, 0, -1)}

    assert done.id in raw_members(finished) and broken.id in raw_members(failed)
    # The workers' own maintenance (every 2 s here) removes expired entries.
    wait_for(lambda: done.id not in raw_members(finished) and broken.id not in raw_members(failed),
             timeout=15, message="the expired entries to be cleaned out")


def test_dependencies_and_get_current_job_work_side_by_side(stack):
    jobs_queue = queue(stack, "jobs")
    first = jobs_queue.enqueue("tests.integration.rq_jobs.report", 0.5)
    second = jobs_queue.enqueue("tests.integration.rq_jobs.report", 0.0, depends_on=first)
    others = [jobs_queue.enqueue("tests.integration.rq_jobs.report", 0.3) for _ in range(3)]
    for job in [first, second, *others]:
        result = job.latest_result(timeout=10)
        assert result is not None and result.type == Result.Type.SUCCESSFUL
        assert result.return_value["job_id"] == job.id  # each thread sees its own job
    assert second.latest_result().return_value["started"] >= first.latest_result().return_value["ended"]


def test_hard_timeout_fails_the_job_with_its_own_timeout_and_frees_the_slot(stack):
    jobs_queue = queue(stack, "jobs")
    began = time.monotonic()
    short = jobs_queue.enqueue("tests.integration.rq_jobs.busy", 30, job_timeout=1)
    longer = jobs_queue.enqueue("tests.integration.rq_jobs.busy", 30, job_timeout=2)
    short_result = short.latest_result(timeout=10)
    longer_result = longer.latest_result(timeout=10)
    assert time.monotonic() - began < 6  # not the 30 s the jobs wanted
    assert short_result.type == longer_result.type == Result.Type.FAILED
    assert "maximum timeout of 1 seconds" in short_result.exc_string
    assert "maximum timeout of 2 seconds" in longer_result.exc_string
    after = jobs_queue.enqueue("tests.integration.rq_jobs.report", 0.0)
    assert after.latest_result(timeout=5).type == Result.Type.SUCCESSFUL


def test_a_cancelled_job_closes_its_upstream_connection(stack):
    results: dict = {}
    thread = in_background(stack, results, "cancel-1", "pool", "[[sandbox hang]] never mind")
    wait_for(lambda: stack.sandbox_calls("cancel-1"), timeout=5, message="the call to reach the provider")
    stack.redis().set(f"aigw:cancel:{job_id_for(stack, 'cancel-1')}", 1, ex=60)  # what the API marks
    marked = time.monotonic()

    def hang_ended():
        hangs = requests.get(f"{stack.sandbox_url}/_sandbox/hangs", timeout=5).json()
        return [h for h in hangs if h["key"] == "cancel-1" and h["ended"]]

    ended = wait_for(hang_ended, timeout=5, message="the upstream connection to close")
    assert ended[0]["reason"] == "client_closed"
    assert time.monotonic() - marked < 2.0
    thread.join(10)
    assert results["cancel-1"].json()["error"]["code"] == "client_closed_request"


def test_a_client_that_disconnects_gets_its_provider_call_dropped(stack):
    with pytest.raises(requests.exceptions.ReadTimeout):
        stack.chat("pool", "[[sandbox hang]] gone", headers={"X-Request-Id": "gone-1"}, timeout=1.0)
    left = time.monotonic()

    def hang_ended():
        hangs = requests.get(f"{stack.sandbox_url}/_sandbox/hangs", timeout=5).json()
        return [h for h in hangs if h["key"] == "gone-1" and h["ended"]]

    ended = wait_for(hang_ended, timeout=6, message="the worker to drop the provider call")
    assert ended[0]["reason"] == "client_closed"
    assert time.monotonic() - left < 4.0  # not the model's 10 s deadline
    assert stack.access_record("gone-1")["status"] == 499


def test_first_sigterm_finishes_running_jobs_and_leaves_queued_ones(stack, tmp_path):
    workers = Process("stopping", [sys.executable, "-m", "workers", "stopping"], stack.env, tmp_path / "w.log")
    try:
        wait_for(lambda: worker_pids(stack, "stopping"), timeout=30, message="a worker")
        results: dict = {}
        running = in_background(stack, results, "term-running", "stopping", "[[sandbox delay_ms=1500]] finish")
        wait_for(lambda: stack.sandbox_calls("term-running"), timeout=5, message="the job to start")
        queued = in_background(stack, results, "term-queued", "stopping", "wait for me")
        wait_for(lambda: stack.redis().llen("rq:queue:stopping") == 1, timeout=5, message="a queued job")
        workers.signal(signal.SIGTERM)
        running.join(10)
        assert results["term-running"].status_code == 200
        assert workers.wait(timeout=10) == 0
        assert stack.redis().llen("rq:queue:stopping") == 1  # still queued for the next worker
        assert stack.sandbox_calls("term-queued") == 0
        queued.join(10)
        assert results["term-queued"].status_code == 504
    finally:
        workers.stop()
        stack.redis().delete("rq:queue:stopping")


def test_second_signal_fails_running_jobs_and_exits_at_once(stack, tmp_path):
    workers = Process("stopping", [sys.executable, "-m", "workers", "stopping"], stack.env, tmp_path / "w.log")
    try:
        wait_for(lambda: worker_pids(stack, "stopping"), timeout=30, message="a worker")
        results: dict = {}
        thread = in_background(stack, results, "cold-1", "stopping", "[[sandbox hang]] interrupted")
        wait_for(lambda: stack.sandbox_calls("cold-1"), timeout=5, message="the job to start")
        workers.signal(signal.SIGTERM)
        time.sleep(1.2)  # a second signal within 1 s counts as the same one (Ctrl-C reaches the whole group)
        second = time.monotonic()
        workers.signal(signal.SIGTERM)
        assert workers.wait(timeout=5) == 0
        assert time.monotonic() - second < 3
        thread.join(10)
        assert results["cold-1"].status_code == 502
        assert results["cold-1"].json()["error"]["code"] == "worker_lost"
        job_id = job_id_for(stack, "cold-1")
        failed = FailedJobRegistry("stopping", connection=stack.redis(), serializer=JSONSerializer)
        assert job_id in failed.get_job_ids()
    finally:
        workers.stop()


def test_rq_suspend_holds_new_jobs_queued_until_rq_resume(stack):
    client = stack.redis()

    def rq(command: str) -> None:
        subprocess.run([sys.executable, "-m", "rq.cli", command, "-u", stack.redis_server.url],
                       check=True, capture_output=True, timeout=30)

    def pool_workers_suspended() -> bool:
        workers = Worker.all(connection=client, queue=queue(stack, "pool"))
        return bool(workers) and all(worker.get_state() == "suspended" for worker in workers)

    rq("suspend")
    try:
        wait_for(pool_workers_suspended, timeout=10, message="the pool worker to notice the suspension")
        results: dict = {}
        thread = in_background(stack, results, "held-1", "pool", "held while suspended")
        wait_for(lambda: client.llen("rq:queue:pool") == 1, timeout=5, message="the request's job queued")
        time.sleep(2.0)  # what must not happen: the worker looks again every second
        assert client.llen("rq:queue:pool") == 1
        assert stack.sandbox_calls("held-1") == 0
    finally:
        rq("resume")
    thread.join(15)
    assert results["held-1"].status_code == 200
    assert stack.sandbox_calls("held-1") == 1
