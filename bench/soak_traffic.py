"""The soak's traffic: a fixed mix of the gateway's endpoints, streamed and whole, each
request built and its answer checked the way a client would.

The sandbox provider is steered by directives in the prompt: whole answers take
``WHOLE_DELAY_MS`` at the provider, streams send ``STREAM_WORDS`` words
``STREAM_CHUNK_MS`` apart, so the latencies reported are the provider's time plus
the gateway's.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass

from sandbox.gitlab import DEMO_TOKEN

WHOLE_DELAY_MS = 100
STREAM_WORDS = 10
STREAM_CHUNK_MS = 50
ANTHROPIC_VERSION = "2023-06-01"
PROJECT = "100"  # acme/platform/api: alice is a Developer there through the acme group

# What the soak's stack serves: an OpenAI model, an Anthropic model (a native pass-through
# for Messages, a translation for Chat Completions), routes with per-user and per-project
# limits that never refuse, so every request pays for the checks. Per-minute limits only: a
# `requests_per_day` log keeps every request for a day, growth by design, not a leak.
CONFIG = """
models:
  - name: chat
    type: openai
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: gpt-soak
    timeout: 30s
    workers: 2
    concurrency: 32
    rate_limit: {requests_per_minute: 1000000, tokens_per_minute: 1000000000}
  - name: claude
    type: anthropic
    base_url: "{sandbox}"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: claude-soak
    timeout: 30s
    workers: 1
    concurrency: 32
    rate_limit: {requests_per_minute: 1000000}
routes:
  - name: acme-projects
    match: {gitlab_group_id: "10"}
    rate_limit: {requests_per_minute: 1000000, per: project}
  - name: demo-user
    match: {gitlab_user_id: "2"}
    rate_limit: {requests_per_minute: 1000000, per: user}
gitlab:
  cache_ttl: 60s
jobs:
  result_ttl: {result_ttl}
  failure_ttl: 1d
"""


def config(result_ttl: str = "60s") -> str:
    """The soak's config; finished jobs (and their results) kept ``result_ttl``."""
    return CONFIG.replace("{result_ttl}", result_ttl)


@dataclass(frozen=True)
class Kind:
    name: str
    path: str
    model: str
    stream: bool = False
    project: bool = False  # names a project (X-Gitlab-Project-Id): a membership lookup, cached

    @property
    def anthropic(self) -> bool:
        return self.path == "/v1/messages"


# (kind, weight): about a third streamed; a tenth embeddings
MIX = [
    (Kind("chat", "/v1/chat/completions", "chat"), 20),
    (Kind("chat project", "/v1/chat/completions", "chat", project=True), 10),
    (Kind("chat stream", "/v1/chat/completions", "chat", stream=True), 15),
    (Kind("chat to claude", "/v1/chat/completions", "claude"), 5),
    (Kind("messages", "/v1/messages", "claude"), 15),
    (Kind("messages stream", "/v1/messages", "claude", stream=True), 15),
    (Kind("messages to chat", "/v1/messages", "chat", project=True), 5),
    (Kind("embeddings", "/v1/embeddings", "chat"), 10),
]


def request_for(kind: Kind, number: int) -> tuple[bytes, dict]:
    """The body and headers of request ``number`` of ``kind``."""
    if kind.path == "/v1/embeddings":
        body = {"model": kind.model, "input": [f"soak request {number}", "a second input"]}
    else:
        if kind.stream:
            words = " ".join(f"w{number}-{i}" for i in range(STREAM_WORDS))
            prompt = f"[[sandbox chunk_delay_ms={STREAM_CHUNK_MS}]] {words}"
        else:
            prompt = f"[[sandbox delay_ms={WHOLE_DELAY_MS}]] soak request {number}"
        body = {"model": kind.model, "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]}
        if kind.stream:
            body["stream"] = True
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {DEMO_TOKEN}"}
    if kind.anthropic:
        headers["anthropic-version"] = ANTHROPIC_VERSION
    if kind.project:
        headers["X-Gitlab-Project-Id"] = PROJECT
    return json.dumps(body).encode(), headers


@dataclass
class Outcome:
    ok: bool
    problem: str | None  # an error's status and code, or what was wrong with the answer
    first_byte: float  # seconds from the scheduled send to the first body bytes
    done: float  # seconds from the scheduled send to the end of the answer


def error_code(status: int, raw: bytes) -> str:
    try:
        error = json.loads(raw).get("error") or {}
        return f"{status} {error.get('code') or error.get('type')}"
    except (ValueError, AttributeError):
        return f"{status} (no JSON error body)"


def check_whole(kind: Kind, raw: bytes, number: int) -> str | None:
    """What is wrong with a 200's body, or None."""
    try:
        answer = json.loads(raw)
        if kind.path == "/v1/embeddings":
            good = len(answer["data"]) == 2 and all(item["embedding"] for item in answer["data"])
        elif kind.anthropic:
            good = answer["content"][0]["text"] == f"Sandbox reply: soak request {number}"
        else:
            good = answer["choices"][0]["message"]["content"] == f"Sandbox reply: soak request {number}"
    except (ValueError, KeyError, IndexError, TypeError):
        good = False
    return None if good else "200 with an unexpected body"


def check_stream(kind: Kind, raw: bytes, number: int) -> str | None:
    text = raw.decode(errors="replace")
    if ("event: error" in text) if kind.anthropic else ('"error"' in text):
        return "stream ended with an error event"
    if ("event: message_stop" if kind.anthropic else "data: [DONE]") not in text:
        return "stream without its end event"
    if f"w{number}-{STREAM_WORDS - 1}" not in text:
        return "stream missing words"
    return None


def send(connection: http.client.HTTPConnection, kind: Kind, number: int, scheduled: float) -> Outcome:
    """One request on ``connection`` (kept alive); times from ``scheduled`` (monotonic), so a
    request that waited for a free client thread counts that wait too."""
    body, headers = request_for(kind, number)
    connection.request("POST", kind.path, body=body, headers=headers)
    response = connection.getresponse()
    first = response.read1(65536) if kind.stream and response.status == 200 else b""
    first_byte = time.monotonic() - scheduled
    raw = first + response.read()
    done = time.monotonic() - scheduled
    if response.status != 200:
        return Outcome(False, error_code(response.status, raw), first_byte, done)
    problem = check_stream(kind, raw, number) if kind.stream else check_whole(kind, raw, number)
    return Outcome(problem is None, problem, first_byte, done)
