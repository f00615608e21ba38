"""``/metrics`` keeps answering through a fresh start under mixed traffic.

Every gateway process on a host writes its metrics to files in one directory; a
value written by two writers into one file once broke every scrape (500,
``JSONDecodeError``) within a few dozen requests of a fresh start. So this
starts the gateway afresh and scrapes after every few requests.
"""

from __future__ import annotations

import uuid

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sandbox.gitlab import BOB_TOKEN, DAVE_TOKEN, DEMO_TOKEN, ERIN_TOKEN
from tests.harness import Stack
from tools.embedded_redis import free_port

CONFIG = """
models:
  - name: chat
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
    rate_limit: {requests_per_minute: 30}
"""


def scrape(port: int) -> dict:
    answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text[:500]
    return {family.name: family for family in text_string_to_metric_families(answer.text)}


def mixed_requests(stack: Stack):
    """Requests that touch every kind of metric, from both web processes: GitLab lookups
    for tokens not seen yet, answers, refusals, streams, rate limits."""
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=DEMO_TOKEN, max_retries=0)
    tokens = [DEMO_TOKEN, BOB_TOKEN, DAVE_TOKEN, ERIN_TOKEN]
    for i in range(40):
        kind = i % 5
        if kind == 0:
            yield stack.chat("chat", f"hello {i}", headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"})
        elif kind == 1:
            yield stack.chat("chat", "x", headers={"Authorization": f"Bearer glpat-unknown-{uuid.uuid4().hex}"})
        elif kind == 2:
            yield list(client.chat.completions.create(model="chat", stream=True,
                                                      messages=[{"role": "user", "content": f"stream {i}"}]))
        elif kind == 3:
            yield stack.chat("no-such-model", "x")
        else:
            yield stack.chat("chat", "[[sandbox fail=503 times=1]] retried")


@pytest.mark.parametrize("start", range(3))
def test_metrics_answer_after_every_few_requests_from_a_fresh_start(tmp_path, start):
    port = free_port()
    stack = Stack(tmp_path / f"start-{start}", CONFIG, web_workers=2, web_threads=8,
                  env={"METRICS_ENABLED": "true", "METRICS_PORT": str(port)})
    try:
        stack.start()
        scrape(port)
        for count, _ in enumerate(mixed_requests(stack), start=1):
            if count % 3 == 0:
                scrape(port)
        families = scrape(port)
        served = sum(s.value for s in families["aigw_requests"].samples if s.name == "aigw_requests_total")
        assert served >= 30  # every request above was counted, whichever process served it
        assert sum(s.value for s in families["aigw_gitlab_requests"].samples
                   if s.name == "aigw_gitlab_requests_total") >= 8
    finally:
        stack.stop()
