"""Metrics scraped after real requests through real processes, and the JSON logs."""

from __future__ import annotations

import json
import re
import sys

import openai
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sandbox.gitlab import ADMIN_TOKEN, DEMO_TOKEN
from tests.harness import PROVIDER_KEY, ROOT, Process, Stack, wait_for
from tools.embedded_redis import free_port

CONFIG = """
models:
  - name: chat
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
  - name: tight
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
    rate_limit: {requests_per_minute: 1}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("observe"), CONFIG, web_workers=2,
               env={"METRICS_ENABLED": "true", "METRICS_PORT": str(free_port()), "LOG_LEVEL": "debug"}) as gateway:
        traffic(gateway)
        yield gateway


def traffic(stack: Stack) -> None:
    """One of everything the metrics count."""
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=DEMO_TOKEN, max_retries=0)
    for i in range(3):
        stack.chat("chat", f"hello {i}", headers={"Authorization": f"Bearer {DEMO_TOKEN}", "X-Request-Id": f"obs-{i}"})
    stack.chat("chat", "[[sandbox fail=503 times=1]] retried", headers={"X-Request-Id": "obs-retry"})
    stack.chat("chat", "[[sandbox fail=503]] broken", headers={"X-Request-Id": "obs-fail"})
    list(client.chat.completions.create(model="chat", stream=True, messages=[{"role": "user", "content": "s t"}]))
    stack.chat("tight", "one")
    assert stack.chat("tight", "two").status_code == 429
    assert stack.chat("chat", "who", headers={"Authorization": ""}).status_code == 401
    assert stack.chat("no-such-model", "x").status_code == 404
    with pytest.raises(requests.exceptions.ReadTimeout):  # a client that gives up: its job is cancelled
        stack.chat("chat", "[[sandbox hang]] gone", headers={"X-Request-Id": "obs-gone"}, timeout=1.0)


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == str(want) for k, want in labels.items()))


@pytest.fixture(scope="module")
def samples(stack):
    port = int(stack.env["METRICS_PORT"])
    # The cancelled job is counted when its worker gives up the call: wait for it.
    wait_for(lambda: value(scrape(port), "aigw_jobs_dropped_total", model="chat", reason="cancelled") >= 1,
             timeout=15, message="the cancelled job to be counted")
    return scrape(port)


def test_api_request_metrics(samples):
    assert value(samples, "aigw_requests_total", endpoint="chat.completions", model="chat", route="-",
                 status=200) >= 5
    assert value(samples, "aigw_requests_total", endpoint="chat.completions", model="tight", status=429) == 1
    assert value(samples, "aigw_requests_total", endpoint="chat.completions", model="-", status=404) == 1
    assert value(samples, "aigw_request_duration_seconds_count", endpoint="chat.completions", model="chat") >= 5
    assert value(samples, "aigw_rate_limited_total", model="tight", scope="model") == 1
    assert value(samples, "aigw_auth_failures_total", reason="missing_credentials") == 1
    assert value(samples, "aigw_gitlab_requests_total", status=200) >= 1


def test_worker_metrics_reach_the_web_masters_endpoint(samples):
    assert value(samples, "aigw_queue_wait_seconds_count", model="chat") >= 5
    assert value(samples, "aigw_upstream_requests_total", model="chat", status=503) == 4  # 1 retried + 3 failed
    assert value(samples, "aigw_upstream_requests_total", model="chat", status=200) >= 5
    assert value(samples, "aigw_upstream_retries_total", model="chat", reason="status_503") == 3  # 1 + 2
    assert value(samples, "aigw_upstream_duration_seconds_count", model="chat") >= 5
    assert value(samples, "aigw_time_to_first_token_seconds_count", model="chat") == 1
    assert value(samples, "aigw_tokens_total", model="chat", kind="prompt", route="-") > 0
    assert value(samples, "aigw_tokens_total", model="chat", kind="completion", route="-") > 0
    assert value(samples, "aigw_jobs_dropped_total", model="chat", reason="cancelled") == 1


def test_redis_facts_are_read_at_scrape_time(samples):
    assert value(samples, "aigw_workers", model="chat") == 1
    assert value(samples, "aigw_queue_depth", model="chat") == 0


def test_histogram_buckets_fit_the_job(samples):
    queue = {float(dict(ls)["le"]) for (n, ls), _ in samples.items() if n == "aigw_queue_wait_seconds_bucket"}
    upstream = {float(dict(ls)["le"]) for (n, ls), _ in samples.items() if n == "aigw_upstream_duration_seconds_bucket"}
    assert min(queue) <= 0.001  # queue waits from a millisecond
    assert max(b for b in upstream if b != float("inf")) >= 300  # LLM calls to several minutes


def test_no_label_carries_a_secret_or_an_unbounded_value(samples):
    labels = " ".join(f"{k}={v}" for (_, ls), _ in samples.items() for k, v in ls)
    for secret in (DEMO_TOKEN, ADMIN_TOKEN, PROVIDER_KEY, "obs-0", "obs-retry", "alice"):
        assert secret not in labels


def test_access_records_carry_every_field(stack):
    wanted = {"obs-0", "obs-retry", "obs-fail", "obs-gone"}
    records = stack.access_records(lambda found: wanted <= {r["request_id"] for r in found})
    access = {r["request_id"]: r for r in records}
    one = access["obs-0"]
    for field in ("time", "level", "request_id", "method", "path", "status", "duration_ms", "user_id", "username",
                  "project_id", "route", "model", "destination", "queue_wait_ms", "upstream_seconds", "attempts",
                  "prompt_tokens", "completion_tokens"):
        assert field in one, field
    assert (one["status"], one["username"], one["model"], one["attempts"]) == (200, "alice", "chat", 1)
    assert access["obs-retry"]["attempts"] == 2
    refused = next(r for r in access.values() if r.get("rate_limit_scope"))
    assert refused["status"] == 429 and refused["rate_limit_scope"] == "model:tight"
    stream = next(r for r in access.values() if r.get("stream"))
    assert stream["stream_outcome"] == "completed" and stream["completion_tokens"] > 0


def test_the_worker_logs_each_job_under_the_same_request_id(stack):
    records = [json.loads(line) for line in stack.workers.log().splitlines() if line.startswith("{")]
    jobs = [r for r in records if r.get("message") == "job done" and r.get("request_id") == "obs-0"]
    assert len(jobs) == 1 and jobs[0]["status"] == 200 and jobs[0]["username"] == "alice"
    assert "prompt" not in jobs[0]  # logging.log_payloads is off


def test_every_record_of_a_request_carries_its_id(stack):
    stack.access_record("obs-fail")  # the last of its records to be written
    records = [json.loads(line) for line in (stack.web.log() + stack.workers.log()).splitlines()
               if line.startswith("{")]
    job_ids = {r["job_id"] for r in records if r.get("request_id") == "obs-fail" and "job_id" in r}
    assert len(job_ids) == 1
    about_the_job = [r for r in records if r.get("job_id") in job_ids]
    assert {r["message"] for r in about_the_job} >= {"job done", "job failed"}  # ours, and RQ's failure
    assert all(r.get("request_id") == "obs-fail" for r in about_the_job)
    api = [r for r in records if r.get("request_id") == "obs-fail" and r.get("logger", "").startswith("aigw.")]
    assert any(r["logger"] == "aigw.access" for r in api)


def test_no_token_or_key_in_any_log_line_at_debug_level(stack):
    everything = stack.logs()
    assert '"level": "debug"' in everything  # debug records were written, so this checks them too
    for secret in (DEMO_TOKEN, ADMIN_TOKEN, PROVIDER_KEY):
        assert secret not in everything
    assert "authorization" not in everything.lower().replace('"authorization":', "")  # no header dumps
    assert "hello 0" not in everything  # nor prompts


def test_workers_alone_serve_their_own_metrics_and_do_not_wipe_the_webs(stack, tmp_path):
    web_port = int(stack.env["METRICS_PORT"])
    before = value(scrape(web_port), "aigw_requests_total", endpoint="chat.completions", model="chat")
    port = free_port()
    extra = Process("workers", [sys.executable, "-m", "workers", "chat", "--metrics-port", str(port)],
                    stack.env, tmp_path / "extra.log")  # same host directory as the web process
    try:
        wait_for(lambda: _answers(port) and value(scrape(port), "aigw_workers", model="chat") == 2, timeout=30,
                 message="the second worker's own /metrics")
        assert value(scrape(web_port), "aigw_requests_total", endpoint="chat.completions", model="chat") == before
        assert value(scrape(port), "aigw_queue_wait_seconds_count", model="chat") >= 5  # the host's files, summed
    finally:
        extra.stop()


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_payloads_are_logged_only_when_configured_and_log_dir_gets_a_file_per_process(tmp_path):
    config = CONFIG + "logging:\n  log_payloads: true\n"
    log_dir = tmp_path / "logs"
    gateway = Stack(tmp_path / "payloads", config, web_workers=2, env={"LOG_DIR": str(log_dir)})
    try:
        gateway.start()
        assert gateway.chat("chat", "tell me a secret recipe", headers={"X-Request-Id": "to-file"}).status_code == 200
        def job_record():  # the worker writes it just after the answer has gone out
            complete = gateway.workers.log().split("\n")[:-1]  # a line being written is skipped
            records = [json.loads(line) for line in complete if line.startswith("{")]
            return next((r for r in records if r.get("message") == "job done"), None)

        job = wait_for(job_record, timeout=10, message="the worker's record of the job")
        assert job["prompt"]["messages"][0]["content"] == "tell me a secret recipe"
        assert job["completion"]["choices"][0]["message"]["content"] == "Sandbox reply: tell me a secret recipe"
        def api_files():  # one per gunicorn worker; the second may still be booting
            return [p.name for p in log_dir.iterdir() if re.fullmatch(r"api-\d+\.log", p.name)]

        assert len(wait_for(lambda: len(api_files()) == 2 and api_files(), timeout=30, message="two api logs")) == 2
        files = {path.name for path in log_dir.iterdir()}
        assert any(f.startswith("api-master-") for f in files)
        assert any(f.startswith("worker-chat-") for f in files)
        written = "".join(path.read_text() for path in log_dir.iterdir())
        assert '"request_id": "to-file"' in written
        complete = [line for path in log_dir.iterdir() for line in path.read_text().split("\n")[:-1]]
        assert complete and all(json.loads(line) for line in complete)  # (a line being written is skipped)
    finally:
        gateway.stop()


def expressions(node) -> list[str]:
    """Every PromQL expression in a dashboard or rule file: the values of "expr" and "query"."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "query") and isinstance(v, str)]
        return found + [e for v in node.values() for e in expressions(v)]
    if isinstance(node, list):
        return [e for item in node for e in expressions(item)]
    return []


def test_the_dashboard_and_alerts_query_only_metrics_that_exist(samples):
    names = {name for name, _ in samples}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "ai-gateway.json").read_text())
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    queries = expressions(dashboard) + expressions(alerts)
    queried = {name for query in queries for name in re.findall(r"aigw_[a-z_]+", query)}
    assert len(queries) >= 10 and len(queried) >= 10
    missing = sorted(q for q in queried if q not in names)
    assert not missing, f"queried but not exported: {missing}"
