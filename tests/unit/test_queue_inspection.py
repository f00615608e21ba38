"""What operators read of the queues (shared.rq_inspection, shared.queue_report,
``python -m workers.inspect``), against a real Redis (embedded) holding records as the gateway's
admission and workers write them."""

from __future__ import annotations

import io
import json
import time

import pytest
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

from shared import keys, rq_inspection, rq_records
from shared.jobs import JobRequest
from shared.queue_report import failed_report, queue_report
from shared.serializers import JobSerializer
from tests.unit.test_rq_records import a_worker, claimed, enqueue, start
from workers import inspect

QUEUE = "m"  # the queue test_rq_records' helpers use
SECRET_PROMPT = "the prompt nobody may read: sk-live-0123456789"


def a_request(job_id: str, *, request_id: str = "req-1", enqueued_at: float | None = None) -> JobRequest:
    return JobRequest(job_id=job_id, request_id=request_id, model=QUEUE, requested_model=QUEUE,
                      endpoint="chat.completions",
                      body={"model": QUEUE, "messages": [{"role": "user", "content": SECRET_PROMPT}]},
                      deadline=time.time() + 30, caller={"user_id": "1"},
                      enqueued_at=time.time() if enqueued_at is None else enqueued_at)


def fail(client, worker, request: JobRequest, error: str) -> Job:
    job = claimed(client, worker, request)
    execution_id = start(client, worker, job)
    with client.pipeline() as pipe:
        rq_records.record_failure(pipe, job, f"Traceback (most recent call last):\n  ...\n{error}\n",
                                  worker_name=worker.name, execution_id=execution_id, claim_key=worker.claim_list_key)
        pipe.execute()
    return job


def test_queue_facts_count_what_waits_runs_serves_and_failed(client):
    worker = a_worker(client)
    fail(client, worker, a_request("f1", request_id="req-f1"), "workers.jobs.JobFailed: upstream_error: boom")
    started = claimed(client, worker, a_request("s1"))
    start(client, worker, started)  # in the started registry
    claimed(client, worker, a_request("c1"))  # taken, its start not recorded yet: in the claim list
    now = time.time()
    enqueue(client, a_request("q1", enqueued_at=now - 42.0))
    enqueue(client, a_request("q2", enqueued_at=now - 1.0))
    (facts,) = rq_inspection.queue_facts(client, [QUEUE], now=now)
    assert (facts.queued, facts.in_progress, facts.workers, facts.failed) == (2, 2, 1, 1)
    assert facts.oldest_queued_age == pytest.approx(42.0, abs=0.01)  # RQ writes microseconds
    client.delete(worker.key)  # its registration expired
    (facts,) = rq_inspection.queue_facts(client, [QUEUE], now=now)
    assert facts.workers == 0


def test_an_empty_queue_has_no_oldest_age_and_an_expired_failure_is_not_counted(client):
    worker = a_worker(client)
    job = fail(client, worker, a_request("f1"), "workers.jobs.JobFailed: upstream_error: boom")
    (facts,) = rq_inspection.queue_facts(client, [QUEUE])
    assert (facts.queued, facts.failed, facts.oldest_queued_age) == (0, 1, None)
    score = client.zscore(keys.rq_failed_registry_key(QUEUE), job.id)
    (later,) = rq_inspection.queue_facts(client, [QUEUE], now=score + 1)  # past its failure_ttl
    assert later.failed == 0
    assert rq_inspection.failed_jobs(client, QUEUE, now=score + 1) == []


def test_a_waiting_job_that_expired_is_skipped_for_the_oldest_age(client):
    now = time.time()
    enqueue(client, a_request("gone", enqueued_at=now - 300))
    enqueue(client, a_request("there", enqueued_at=now - 5))
    client.delete(keys.rq_job_key("gone"))  # its hash expired; the id stays in the list until taken
    (facts,) = rq_inspection.queue_facts(client, [QUEUE], now=now)
    assert facts.queued == 2 and facts.oldest_queued_age == pytest.approx(5.0, abs=0.01)


def test_a_newer_job_put_in_front_does_not_hide_the_oldest(client):
    now = time.time()
    enqueue(client, a_request("old", enqueued_at=now - 60))
    enqueue(client, a_request("retry", enqueued_at=now - 2))
    client.lrem(keys.rq_queue_key(QUEUE), 1, "retry")
    client.lpush(keys.rq_queue_key(QUEUE), "retry")  # ahead of the waiting jobs (a fallback's job)
    (facts,) = rq_inspection.queue_facts(client, [QUEUE], now=now)
    assert facts.oldest_queued_age == pytest.approx(60.0, abs=0.01)


def test_failed_jobs_show_error_request_id_and_endpoint_never_the_payload(client):
    worker = a_worker(client)
    fail(client, worker, a_request("f1", request_id="req-first"), "workers.jobs.JobFailed: upstream_error: first")
    fail(client, worker, a_request("f2", request_id="req-second"), "workers.jobs.JobFailed: timeout: second")
    jobs = rq_inspection.failed_jobs(client, QUEUE)
    assert [job.job_id for job in jobs] == ["f2", "f1"]  # latest first
    assert jobs[0].error == "workers.jobs.JobFailed: timeout: second"
    assert (jobs[0].request_id, jobs[0].endpoint) == ("req-second", "chat.completions")
    assert jobs[0].failed_at == pytest.approx(time.time(), abs=5)
    assert [job["job_id"] for job in failed_report(client, QUEUE, limit=1)] == ["f2"]
    shown = json.dumps(failed_report(client, QUEUE))
    assert SECRET_PROMPT not in shown and "sk-live" not in shown


def test_a_job_not_the_gateway_s_shows_no_description(client):
    # RQ's own enqueue describes a job by its call, arguments included: never shown.
    queue = Queue(QUEUE, connection=client, serializer=JobSerializer)
    job = queue.enqueue("os.getcwd", SECRET_PROMPT, failure_ttl=60)
    registry = FailedJobRegistry(QUEUE, connection=client, serializer=JobSerializer)
    client.lrem(keys.rq_queue_key(QUEUE), 1, job.id)
    registry.add(job, ttl=60, exc_string="ValueError: no")
    (listed,) = rq_inspection.failed_jobs(client, QUEUE)
    assert (listed.job_id, listed.request_id, listed.endpoint) == (job.id, None, None)
    assert SECRET_PROMPT not in json.dumps(failed_report(client, QUEUE))


def test_purge_removes_failed_jobs_and_their_records_and_nothing_else(client):
    worker = a_worker(client)
    failed = [fail(client, worker, a_request(f"f{n}"), "workers.jobs.JobFailed: upstream_error: x") for n in range(3)]
    enqueue(client, a_request("waiting"))
    assert client.exists(keys.rq_results_key("f0"))
    assert rq_inspection.purge_failed(client, QUEUE, batch=2) == 3
    assert not client.exists(*(keys.rq_job_key(job.id) for job in failed))
    assert not client.exists(*(keys.rq_results_key(job.id) for job in failed))
    assert client.zcard(keys.rq_failed_registry_key(QUEUE)) == 0
    assert client.exists(keys.rq_job_key("waiting")) and rq_records.queue_depth(client, QUEUE) == 1
    assert rq_inspection.purge_failed(client, QUEUE) == 0


def test_the_report_lists_configured_models_and_a_removed_model_s_leftovers(client):
    a_worker(client)  # serves "m", registers it in rq:queues
    client.sadd(keys.RQ_QUEUES_KEY, keys.rq_queue_key("gone-empty"))  # a removed model, nothing left
    report = queue_report(client, ["other"])
    assert report == {"suspended": False, "models": {
        "other": {"configured": True, "queued": 0, "in_progress": 0, "workers": 0, "failed": 0,
                  "oldest_queued_age_seconds": None},
        QUEUE: {"configured": False, "queued": 0, "in_progress": 0, "workers": 1, "failed": 0,
                "oldest_queued_age_seconds": None}}}
    client.set(keys.RQ_SUSPENDED_KEY, 1)
    assert queue_report(client, [QUEUE])["suspended"] is True


# -- the command ---------------------------------------------------------------------------------
@pytest.fixture
def configured(tmp_path, monkeypatch, redis_server, client):
    config = tmp_path / "config.yaml"
    config.write_text(f"models:\n  - name: {QUEUE}\n    type: generic\n    base_url: http://127.0.0.1:9/v1\n"
                      "  - name: idle\n    type: generic\n    base_url: http://127.0.0.1:9/v1\n")
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("CONFIG_FILE_PATH", str(config))
    return config


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = inspect.main(list(argv), out=out)
    return code, out.getvalue()


def test_the_command_prints_a_table_and_json(configured, client):
    worker = a_worker(client)
    fail(client, worker, a_request("f1", request_id="req-f1"), "workers.jobs.JobFailed: upstream_error: boom")
    enqueue(client, a_request("q1", enqueued_at=time.time() - 75))
    code, table = run()
    assert code == 0
    lines = table.splitlines()
    assert lines[0].split() == ["MODEL", "QUEUED", "IN", "PROGRESS", "WORKERS", "FAILED", "OLDEST", "QUEUED"]
    assert lines[1].split()[:5] == ["m", "1", "0", "1", "1"] and lines[1].split()[5].startswith("1m1")
    assert lines[2].split() == ["idle", "0", "0", "0", "0", "-"]
    code, raw = run("--json")
    report = json.loads(raw)
    assert report["models"][QUEUE]["queued"] == 1 and report["models"]["idle"]["workers"] == 0
    direct = queue_report(client, [QUEUE, "idle"])  # what GET /admin/queues answers, but for the age
    report["models"][QUEUE].pop("oldest_queued_age_seconds")
    assert direct["models"][QUEUE].pop("oldest_queued_age_seconds") > 74
    assert report == direct
    code, raw = run("failed", QUEUE, "--json")
    assert code == 0
    (job,) = json.loads(raw)
    assert (job["job_id"], job["request_id"], job["error"]) == ("f1", "req-f1",
                                                                "workers.jobs.JobFailed: upstream_error: boom")
    code, text = run("failed", QUEUE)
    assert "1 failed job." in text and "never requeued" in text and "request_id=req-f1" in text
    assert SECRET_PROMPT not in raw + text
    code, text = run("purge", QUEUE)
    assert (code, text.strip()) == (0, "m: removed 1 failed job and their records")
    assert run("failed", QUEUE, "--json") == (0, "[]\n")


def test_the_command_names_only_known_queues(configured, client, capsys):
    code, _ = run("purge", "rq:queue:m*")  # neither a model nor a known queue: no key is built from it
    assert code == 2
    assert "neither a configured model nor a queue in Redis" in capsys.readouterr().err


def test_the_command_without_a_valid_config_lists_redis_s_queues(configured, client, capsys):
    configured.write_text("models: [")
    a_worker(client)
    code, raw = run("--json")
    assert code == 0 and list(json.loads(raw)["models"]) == [QUEUE]
    assert "config error" in capsys.readouterr().err


def test_the_command_says_when_redis_does_not_answer(configured, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:9/0")
    code, _ = run()
    err = capsys.readouterr().err
    assert code == 1 and "cannot reach Redis at redis://:***@127.0.0.1:9/0" in err and "hunter2" not in err


def test_watch_refreshes_until_interrupted(configured, client, monkeypatch):
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(inspect.time, "sleep", sleep)
    code, out = run("--json", "--watch", "0.5")
    assert code == 0 and sleeps == [0.5, 0.5]
    assert [sorted(json.loads(line)["models"]) for line in out.splitlines()] == [["idle", QUEUE]] * 2


@pytest.mark.parametrize("argv", [["--watch", "0.1"], ["failed", QUEUE, "--limit", "0"], ["purge"]])
def test_bad_arguments_exit_2(argv):
    with pytest.raises(SystemExit) as stopped:
        inspect.parse_args(argv)
    assert stopped.value.code == 2


@pytest.mark.parametrize(("seconds", "shown"), [(None, "-"), (4.24, "4.2s"), (724, "12m04s"), (11220, "3h07m")])
def test_ages_read_as_a_person_reads_them(seconds, shown):
    assert inspect.age(seconds) == shown
