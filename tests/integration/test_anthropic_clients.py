"""Anthropic clients, faithfully (issue 15), through real processes: the gateway, its workers, Redis and
the sandbox provider.

- Passthrough to an Anthropic model: the body untouched but ``model``, ``anthropic-version`` and
  ``anthropic-beta`` forwarded, ``?beta=true`` accepted; the provider judges the rest (the sandbox, as
  Anthropic did before it made mid-conversation system messages generally available, refuses one from an
  older model unless the beta header names it). OpenAI-format requests to OpenAI models alike.
- ``POST /v1/messages/count_tokens``: the provider's own count for an Anthropic model, through a job
  that takes no rate-limit allowance; the documented estimate for other models; routes apply.
- ``drop_params``: dropped fields named in ``x-aigw-dropped-params`` and the access record.
- Claude Code's own requests (tests/clients/fixtures) to an Anthropic model and to an OpenAI model,
  streamed, with the real input tokens in ``message_delta``.
- ``GET``/``HEAD /``; the client's session id and the query string in the access record.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import anthropic
import openai
import pytest
import requests

from sandbox.provider_logic import MID_CONVERSATION_SYSTEM_BETA
from shared.ratelimit import estimate_tokens
from tests.harness import DEMO_TOKEN, Stack, with_credential

FIXTURES = Path(__file__).resolve().parents[1] / "clients" / "fixtures"
HIDDEN = "hidden"
CONFIG = f"""
models:
  - name: claude                  # an older Anthropic model: a system message inside messages needs the beta
    type: anthropic
    base_url: "{{sandbox}}"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: claude-upstream
    timeout: 15s
    workers: 1
    drop_params: [seed]           # only translations drop: an Anthropic client's request drops nothing
  - name: claude-limited          # 3 requests a minute: counting tokens takes none of them
    type: anthropic
    base_url: "{{sandbox}}"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: claude-upstream
    timeout: 15s
    workers: 1
    rate_limit: {{requests_per_minute: 3}}
  - name: claude-opus-5-5         # the model Claude Code asks for by default: current, no beta needed
    type: anthropic
    base_url: "{{sandbox}}"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 15s
    workers: 1
  - name: gpt                     # no reasoning control: Claude Code's thinking and effort are dropped
    type: openai
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: gpt-upstream
    timeout: 15s
    workers: 1
    drop_params: [thinking, output_config.effort]
  - name: gpt-strict              # the same model, nothing dropped
    type: openai
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: gpt-upstream
    timeout: 15s
    workers: 1
  - name: gpt-reasoning           # a reasoning model: thinking and effort become reasoning_effort
    type: openai
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: gpt-upstream
    timeout: 15s
    workers: 1
    reasoning: effort
  - name: {HIDDEN}
    type: anthropic
    base_url: "{{sandbox}}"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    timeout: 15s
    workers: 0
routes:
  - name: demo
    match:
      gitlab_user_id: "2"
      model_name: [claude, claude-limited, claude-opus-5-5, gpt, gpt-strict, gpt-reasoning]
jobs:
  result_ttl: 30s
"""
USER = {"role": "user", "content": "hello there"}
MID_SYSTEM = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
              {"role": "system", "content": "from now on be terse"}, {"role": "user", "content": "again please"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = Stack(tmp_path_factory.mktemp("anthropic-clients"), CONFIG, web_workers=1, web_threads=16)
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()


def client(stack: Stack, request_id: str | None = None, **headers) -> anthropic.Anthropic:
    extra = {"X-Request-Id": request_id} if request_id else {}
    return anthropic.Anthropic(base_url=stack.url, api_key=DEMO_TOKEN, max_retries=0,
                               default_headers={**extra, **headers})


def rid() -> str:
    return f"t15-{uuid.uuid4().hex[:16]}"


def provider_saw(stack: Stack, request_id: str, path: str | None = None) -> list[dict]:
    """The requests the sandbox provider received for ``request_id`` (the gateway forwards the id)."""
    answer = requests.get(f"{stack.sandbox_url}/_sandbox/log", params={"key": request_id}, timeout=5).json()
    return [entry for entry in answer["requests"] if path is None or entry["path"] == path]


def post(stack: Stack, path: str, body: dict, *, request_id: str, headers: dict | None = None,
         stream: bool = False) -> requests.Response:
    headers = with_credential({"anthropic-version": "2023-06-01", "X-Request-Id": request_id, **(headers or {})})
    return requests.post(f"{stack.url}{path}", json=body, headers=headers, timeout=30, stream=stream)


def sse_events(response: requests.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


# --- passthrough ----------------------------------------------------------------------------------

def test_the_beta_header_and_unknown_fields_reach_an_anthropic_model(stack):
    request_id = rid()
    sdk = client(stack, request_id)
    answer = sdk.beta.messages.create(
        model="claude", max_tokens=64, messages=MID_SYSTEM, betas=[MID_CONVERSATION_SYSTEM_BETA, "effort-2025-11-24"],
        output_config={"effort": "low"}, extra_body={"x_future_field": {"nested": [1, 2]}, "top_k": 5})
    assert answer.content[0].text == "Sandbox reply: again please" and answer.model == "claude"
    [seen] = provider_saw(stack, request_id, "/v1/messages")
    assert seen["headers"]["anthropic-beta"] == f"{MID_CONVERSATION_SYSTEM_BETA},effort-2025-11-24"
    assert seen["headers"]["anthropic-version"] == sdk.default_headers["anthropic-version"]  # the client's
    assert seen["body"] == {"model": "claude-upstream", "max_tokens": 64, "messages": MID_SYSTEM,
                            "output_config": {"effort": "low"}, "x_future_field": {"nested": [1, 2]}, "top_k": 5}
    record = stack.access_record(request_id)
    assert "dropped_params" not in record  # passthrough drops nothing


def test_without_the_beta_the_provider_judges_the_system_message(stack):
    """The gateway no longer refuses the role itself: the provider does, in its own words."""
    request_id = rid()
    with pytest.raises(anthropic.BadRequestError) as refused:
        client(stack, request_id).messages.create(model="claude", max_tokens=64, messages=MID_SYSTEM)
    assert refused.value.body["error"]["message"] == "messages.2.role: Input should be 'user' or 'assistant'"
    assert len(provider_saw(stack, request_id, "/v1/messages")) == 1  # it reached the provider
    # A current model takes it with no beta, as Anthropic's do now.
    current = client(stack).messages.create(model="claude-opus-5-5", max_tokens=64, messages=MID_SYSTEM)
    assert current.content[0].text == "Sandbox reply: again please"


def test_an_openai_client_to_an_openai_model_passes_unknown_fields(stack):
    request_id = rid()
    answer = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=DEMO_TOKEN, max_retries=0).chat.completions.create(
        model="gpt-strict", messages=[{"role": "user", "content": "hi"}], n=1,
        extra_body={"x_vendor_option": {"a": 1}, "seed": 7}, extra_headers={"X-Request-Id": request_id})
    assert answer.choices[0].message.content == "Sandbox reply: hi"
    [seen] = provider_saw(stack, request_id, "/v1/chat/completions")
    assert seen["body"]["x_vendor_option"] == {"a": 1} and seen["body"]["seed"] == 7 and seen["body"]["n"] == 1


def test_the_provider_not_the_gateway_judges_a_chat_messages_role(stack):
    """A role the gateway once refused itself is now the provider's to refuse, in its own words."""
    request_id = rid()
    answer = requests.post(f"{stack.url}/v1/chat/completions", timeout=30, headers=with_credential(
        {"X-Request-Id": request_id}), json={"model": "gpt-strict", "messages": [{"role": "robot", "content": "x"}]})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "upstream_invalid_request"
    assert "Invalid value: 'robot'" in answer.json()["error"]["message"]
    assert len(provider_saw(stack, request_id, "/v1/chat/completions")) == 1


# --- count_tokens ---------------------------------------------------------------------------------

def test_count_tokens_of_an_anthropic_model_is_the_providers_and_takes_no_allowance(stack):
    request_id = rid()
    sdk = client(stack, request_id)
    body = {"system": "be brief", "messages": [{"role": "user", "content": "one two three"}]}
    counted = sdk.messages.count_tokens(model="claude", **body)
    direct = requests.post(f"{stack.sandbox_url}/v1/messages/count_tokens", timeout=5,
                           json={"model": "claude-upstream", **body},
                           headers={"x-api-key": "sk-sandbox-provider-key-0123456789",
                                    "anthropic-version": "2023-06-01"}).json()
    assert counted.input_tokens == direct["input_tokens"] == 5
    [seen] = provider_saw(stack, request_id, "/v1/messages/count_tokens")
    assert seen["body"] == {"model": "claude-upstream", **body}
    # The beta client's ?beta=true and betas reach the provider too.
    beta = sdk.beta.messages.count_tokens(model="claude", messages=MID_SYSTEM, betas=[MID_CONVERSATION_SYSTEM_BETA])
    assert beta.input_tokens > 0
    # The model allows 3 requests a minute; many counts later all 3 messages still go through.
    for _ in range(4):
        assert client(stack).messages.count_tokens(model="claude-limited", **body).input_tokens == 5
    for _ in range(3):
        client(stack).messages.create(model="claude-limited", max_tokens=16, messages=[USER])
    with pytest.raises(anthropic.RateLimitError):
        client(stack).messages.create(model="claude-limited", max_tokens=16, messages=[USER])
    record = stack.access_record(request_id)
    assert record["destination"] == "claude" and record["status"] == 200


def test_count_tokens_of_other_models_is_the_documented_estimate(stack):
    request_id = rid()
    body = {"system": "be brief", "messages": [{"role": "user", "content": "one two three four"}],
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}]}
    answer = post(stack, "/v1/messages/count_tokens?beta=true", {"model": "gpt", **body}, request_id=request_id)
    assert answer.status_code == 200
    assert answer.json() == {"input_tokens": estimate_tokens(body, 0)}
    assert provider_saw(stack, request_id) == []  # no job, no provider call
    assert stack.access_record(request_id)["estimated"] is True


def test_count_tokens_needs_a_credential_and_a_route(stack):
    body = {"model": HIDDEN, "messages": [USER]}
    no_route = post(stack, "/v1/messages/count_tokens", body, request_id=rid())
    assert no_route.status_code == 403
    assert no_route.json()["type"] == "error" and no_route.json()["error"]["type"] == "permission_error"
    anonymous = requests.post(f"{stack.url}/v1/messages/count_tokens", json={**body, "model": "claude"}, timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"
    streamed = post(stack, "/v1/messages/count_tokens", {**body, "model": "claude", "stream": True}, request_id=rid())
    assert streamed.status_code == 400 and streamed.json()["error"]["type"] == "invalid_request_error"


# --- drop_params ----------------------------------------------------------------------------------

THINKING = {"thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "high"}}


@pytest.mark.parametrize("stream", [False, True])
def test_drop_params_drops_and_reports_what_it_dropped(stack, stream):
    request_id = rid()
    body = {"model": "gpt", "max_tokens": 64, "messages": [USER], "stream": stream, **THINKING}
    answer = post(stack, "/v1/messages", body, request_id=request_id, stream=stream)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-aigw-dropped-params"] == "thinking, output_config.effort"
    text = "".join(e["delta"].get("text", "") for name, e in sse_events(answer) if name == "content_block_delta") \
        if stream else answer.json()["content"][0]["text"]
    assert text == "Sandbox reply: hello there"
    [seen] = provider_saw(stack, request_id, "/v1/chat/completions")
    assert "reasoning_effort" not in seen["body"] and "thinking" not in seen["body"]
    assert stack.access_record(request_id)["dropped_params"] == ["thinking", "output_config.effort"]


def test_without_drop_params_the_field_is_refused_by_name(stack):
    answer = post(stack, "/v1/messages", {"model": "gpt-strict", "max_tokens": 64, "messages": [USER], **THINKING},
                  request_id=rid())
    assert answer.status_code == 400 and "x-aigw-dropped-params" not in answer.headers
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert "'thinking'" in answer.json()["error"]["message"]


def test_a_reasoning_model_gets_the_effort(stack):
    request_id = rid()
    answer = post(stack, "/v1/messages", {"model": "gpt-reasoning", "max_tokens": 64, "messages": [USER], **THINKING},
                  request_id=request_id)
    assert answer.status_code == 200 and "x-aigw-dropped-params" not in answer.headers
    [seen] = provider_saw(stack, request_id, "/v1/chat/completions")
    assert seen["body"]["reasoning_effort"] == "high" and seen["body"]["max_completion_tokens"] == 64


def test_an_openai_client_translated_for_anthropic_drops_too(stack):
    request_id = rid()
    answer = requests.post(f"{stack.url}/v1/chat/completions", timeout=30, headers=with_credential(
        {"X-Request-Id": request_id}), json={"model": "claude", "seed": 7, "messages": [USER]})
    assert answer.status_code == 200 and answer.headers["x-aigw-dropped-params"] == "seed"
    [seen] = provider_saw(stack, request_id, "/v1/messages")
    assert "seed" not in seen["body"]


# --- Claude Code's own requests -------------------------------------------------------------------

def claude_code_bodies(name: str) -> list[tuple[dict, dict]]:
    """The (headers, body) pairs a fixture recorded, with the recorder's references to the first request's
    fields and list items (tests/clients/record.py dedupe) resolved."""
    requests_ = json.loads((FIXTURES / name).read_text())["requests"]
    first = requests_[0]["body"]

    def resolve(key, value):
        if value == f"<same as requests[0].body.{key}>":
            return first[key]
        if isinstance(value, list):
            return [first[key][i] if item == f"<same as requests[0].body.{key}[{i}]>" else item
                    for i, item in enumerate(value)]
        return value

    out = []
    for request in requests_:
        headers = {name: value for name, value in request["headers"]
                   if name.lower() in ("anthropic-beta", "anthropic-version", "x-claude-code-session-id")}
        out.append((headers, {key: resolve(key, value) for key, value in request["body"].items()}))
    return out


@pytest.mark.parametrize(("model", "translated"), [("claude-opus-5-5", False), ("gpt", True)])
def test_claude_codes_requests_stream_with_the_real_input_tokens(stack, model, translated):
    for headers, body in claude_code_bodies("claude-code-2.1.332-tool.json"):
        body = {**body, "model": model}
        whole = post(stack, "/v1/messages?beta=true", {**body, "stream": False}, request_id=rid(), headers=headers)
        assert whole.status_code == 200, whole.text
        input_tokens = whole.json()["usage"]["input_tokens"]
        assert input_tokens > 100  # Claude Code's system prompt and messages
        request_id = rid()
        streamed = post(stack, "/v1/messages?beta=true", body, request_id=request_id, headers=headers, stream=True)
        assert streamed.status_code == 200, streamed.text
        events = sse_events(streamed)
        names = [name for name, _ in events]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        assert "content_block_stop" in names
        started, final = events[0][1]["message"]["usage"], events[-2][1]["usage"]
        # What Claude Code reads: message_delta's usage, where the provider's stream (Anthropic's own, passed
        # through) may leave the input count to message_start; a translated stream always carries it there.
        assert final.get("input_tokens", None if translated else started["input_tokens"]) == input_tokens
        [seen] = provider_saw(stack, request_id)
        record = stack.access_record(request_id)
        assert record["session_id"] == headers["X-Claude-Code-Session-Id"]
        assert record["path"] == "/v1/messages?beta=true" and record["stream_outcome"] == "completed"
        if translated:
            assert streamed.headers["x-aigw-dropped-params"] == "thinking, output_config.effort"
            assert seen["path"] == "/v1/chat/completions"
            roles = [message["role"] for message in seen["body"]["messages"]]
            assert roles[:3] == ["system", "user", "system"]  # the system message stays where Claude Code put it
        else:  # passthrough: untouched but the model, with Claude Code's betas
            assert "x-aigw-dropped-params" not in streamed.headers
            assert seen["body"] == {**body, "model": "claude-opus-5-5"}
            assert seen["headers"]["anthropic-beta"] == headers["anthropic-beta"]


# --- the root, the access record ------------------------------------------------------------------

def test_head_and_get_root_answer_200_saying_nothing(stack):
    head = requests.head(f"{stack.url}/", timeout=5)
    get = requests.get(f"{stack.url}/", timeout=5)
    assert head.status_code == 200 and head.content == b""
    assert get.status_code == 200 and get.json() == {}
    for answer in (head, get):  # the headers every answer has; no name, version or host of the deployment
        assert {name.lower() for name in answer.headers} <= {"date", "connection", "content-length",
                                                             "content-type", "x-request-id"}, answer.headers
    # Nor does any other answer name the server (gunicorn's Server header is removed: api/gunicorn_patches.py).
    others = [requests.get(f"{stack.url}/health", timeout=5), requests.get(f"{stack.url}/nowhere", timeout=5),
              post(stack, "/v1/messages", {"model": "claude-opus-5-5", "max_tokens": 16, "messages": [USER]},
                   request_id=rid())]
    assert [answer.status_code for answer in others] == [200, 404, 200]
    assert not [answer.headers["Server"] for answer in (head, get, *others) if "Server" in answer.headers]


def test_the_session_id_and_the_query_string_are_recorded(stack):
    request_id = rid()
    answer = post(stack, "/v1/messages?beta=true&api_key=sk-secret-123", {"model": "claude-opus-5-5",
                                                                         "max_tokens": 16, "messages": [USER]},
                  request_id=request_id, headers={"X-Claude-Code-Session-Id": "4c442fe0-3ccb-473d-9b87-3dc397ec79a5"})
    assert answer.status_code == 200
    record = stack.access_record(request_id)
    assert record["path"] == "/v1/messages?beta=true&api_key=[redacted]"
    assert record["session_id"] == "4c442fe0-3ccb-473d-9b87-3dc397ec79a5"
    assert "sk-secret-123" not in stack.web.log()
    insane = rid()
    post(stack, "/v1/messages", {"model": "claude-opus-5-5", "max_tokens": 16, "messages": [USER]},
         request_id=insane, headers={"X-Claude-Code-Session-Id": "bad id; drop table"})
    assert "session_id" not in stack.access_record(insane)
