"""At ``LOG_LEVEL=debug`` every attempt of an upstream call leaves a record naming the URL it
called and its outcome (the status, or why none came: refused connection, timeout), retries
included; and no key, token or URL credential appears anywhere in any process's log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from sandbox.gitlab import ADMIN_TOKEN, DEMO_TOKEN
from tests.harness import PROVIDER_KEY, Stack, wait_for
from tools.embedded_redis import free_port

USERINFO_SECRET = "userinfo-secret-5150"
QUERY_SECRETS = ("query-secret-0452", "query-secret-0453")
CLOSED_PORT = free_port()  # nothing listens there: every connection is refused

CONFIG = f"""
models:
  - name: plain
    type: generic
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 10s
    retries: {{attempts: 3}}
    workers: 1
  - name: short
    type: generic
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 2s
    retries: {{attempts: 2}}
    workers: 1
  - name: unreachable
    type: generic
    base_url: "http://gateway:{USERINFO_SECRET}@127.0.0.1:{CLOSED_PORT}/v1?api-key={QUERY_SECRETS[0]}"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 8s
    retries: {{attempts: 3}}
    workers: 1
  - name: keyed-query
    type: generic
    base_url: "{{sandbox}}/v1?api-key={QUERY_SECRETS[1]}"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 5s
    workers: 1
  - name: gemini
    type: vertex
    project: standin-project
    location: us-central1
    base_url: "{{vertex}}/v1"
    credentials_file: "{{vertex_credentials}}"
    model: gemini-2.0-flash
    timeout: 10s
    workers: 1
"""


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("upstream-debug"), CONFIG, web_workers=1, web_threads=8,
               env={"LOG_LEVEL": "debug", "LOG_FORMAT": "json"}) as gateway:
        yield gateway


def upstream_records(stack: Stack, request_id: str, count: int) -> list[dict]:
    """The debug records of ``request_id``'s upstream attempts, once ``count`` are written."""
    def read() -> list[dict] | None:
        found = []
        for line in stack.logs().splitlines():
            if line.startswith("{") and '"aigw.upstream"' in line:
                record = json.loads(line)
                if record.get("request_id") == request_id:
                    found.append(record)
        return found if len(found) >= count else None
    return wait_for(read, timeout=15, message=f"{count} upstream records of {request_id}")


def call(stack: Stack, model: str, content: str, **extra):
    request_id = f"debug-{uuid.uuid4().hex[:12]}"
    answer = stack.chat(model, content, headers={"X-Request-Id": request_id}, **extra)
    return answer, request_id


def test_a_successful_call_names_its_url_and_status(debug_stack) -> None:
    answer, request_id = call(debug_stack, "plain", "hello")
    assert answer.status_code == 200, answer.text
    [record] = upstream_records(debug_stack, request_id, 1)
    assert record["level"] == "debug" and record["message"] == "upstream call"
    assert record["url"] == f"{debug_stack.sandbox_url}/v1/chat/completions"
    assert record["status"] == 200 and record["attempt"] == 1 and record["stream"] is False
    assert record["model"] == "plain" and record["seconds"] >= 0


def test_each_retry_has_its_record(debug_stack) -> None:
    answer, request_id = call(debug_stack, "plain", "[[sandbox fail=503 times=1]] once more")
    assert answer.status_code == 200, answer.text
    records = upstream_records(debug_stack, request_id, 2)
    assert [(r["attempt"], r["status"]) for r in records] == [(1, 503), (2, 200)]
    assert {r["url"] for r in records} == {f"{debug_stack.sandbox_url}/v1/chat/completions"}


def test_refused_connections_name_the_url_without_its_credentials(debug_stack) -> None:
    answer, request_id = call(debug_stack, "unreachable", "hello")
    assert answer.status_code == 502, answer.text
    # The client reads why, not requests' nested reprs (class names, the URL and its query).
    assert answer.json()["error"]["message"].endswith("could not connect: Connection refused"), answer.text
    records = upstream_records(debug_stack, request_id, 3)
    assert [r["attempt"] for r in records] == [1, 2, 3]
    for record in records:
        assert record["message"] == "upstream call failed" and record["error"] == "connection_error"
        assert "status" not in record
        assert record["url"] == f"http://127.0.0.1:{CLOSED_PORT}/v1?api-key=[redacted]"
        assert record["detail"]  # what the connection said, for the operator


def test_a_timeout_is_recorded_as_one(debug_stack) -> None:
    answer, request_id = call(debug_stack, "short", "[[sandbox hang]] wait")
    assert answer.status_code == 504, answer.text
    records = upstream_records(debug_stack, request_id, 1)
    assert {r["error"] for r in records} == {"timeout"}
    assert {r["url"] for r in records} == {f"{debug_stack.sandbox_url}/v1/chat/completions"}


def test_a_query_key_in_the_base_url_is_redacted(debug_stack) -> None:
    """An operator's base_url carrying a key in its query (the provider then answers 404 here)."""
    answer, request_id = call(debug_stack, "keyed-query", "hello")
    assert answer.status_code == 502, answer.text
    [record] = upstream_records(debug_stack, request_id, 1)
    assert record["status"] == 404
    assert record["url"] == f"{debug_stack.sandbox_url}/v1?api-key=[redacted]"


def test_a_vertex_stream_shows_its_method_and_alt(debug_stack) -> None:
    answer, request_id = call(debug_stack, "gemini", "hello", stream=True)
    assert answer.status_code == 200 and "[DONE]" in answer.text, answer.text
    [record] = upstream_records(debug_stack, request_id, 1)
    assert record["stream"] is True and record["status"] == 200
    assert record["url"] == (f"{debug_stack.vertex_url}/v1/projects/standin-project/locations/us-central1"
                             "/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse")


def test_no_secret_appears_in_any_log(debug_stack) -> None:
    """Runs last: after every call above, every process's whole log, at debug."""
    call(debug_stack, "gemini", "one whole answer too")
    key_file = json.loads(Path(debug_stack.dir / "vertex-service-account.json").read_text())
    private_key_lines = [line for line in key_file["private_key"].splitlines() if len(line) > 40]
    logs = {path.name: path.read_text(errors="replace") for path in debug_stack.dir.glob("*.log")}
    assert any('"level": "debug"' in text for text in logs.values())
    secrets = [PROVIDER_KEY, DEMO_TOKEN, ADMIN_TOKEN, USERINFO_SECRET, *QUERY_SECRETS, *private_key_lines[:3]]
    for name, text in logs.items():
        if name.startswith(("web", "workers")):
            for secret in secrets:
                assert secret not in text, f"{secret[:12]}... in {name}"
            assert "Bearer " not in text, name
