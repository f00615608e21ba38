"""OpenAI's Responses API end to end, through the official SDK, to every model type.

``gpt`` (openai) and ``native`` (generic with ``native_responses_api``) pass the request through to
the sandbox provider's own /v1/responses; ``local`` (generic), ``claude`` (anthropic) and
``gemini`` (the Vertex stand-in) get it translated through the chat pivot. The sandbox scripts
tool calls and faults with ``[[sandbox ...]]`` directives in the text (sandbox/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import requests

from sandbox.gitlab import BOB_TOKEN, DEMO_TOKEN
from tests.harness import Stack, wait_for

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
models:
  - name: gpt
    type: openai
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: gpt-upstream
    timeout: 10s
    workers: 1
  - name: native
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: vllm-upstream
    native_responses_api: true
    timeout: 10s
    workers: 1
  - name: local
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
  - name: claude
    type: anthropic
    base_url: "{sandbox}"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: claude-upstream
    timeout: 10s
    workers: 1
    drop_params: [tools.web_search]
  - name: gemini
    type: vertex
    project: standin-project
    location: us-central1
    base_url: "{vertex}/v1"
    credentials_file: "{vertex_credentials}"
    model: gemini-2.0-flash
    timeout: 10s
    workers: 1
  - name: limited
    type: openai
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
    rate_limit: {requests_per_minute: 2}
jobs:
  result_ttl: 30s
"""
PASSED_THROUGH = ("gpt", "native")
TRANSLATED = ("local", "claude", "gemini")
MODELS = PASSED_THROUGH + TRANSLATED
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gateway = Stack(tmp_path_factory.mktemp("responses"), CONFIG, web_workers=1, web_threads=16)
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()


def client(stack: Stack, token: str = DEMO_TOKEN, **options) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=token, max_retries=0, timeout=30, **options)


def sandbox_bodies(stack: Stack, request_id: str) -> list[dict]:
    """The bodies the sandbox provider received for a gateway request id."""
    answer = requests.get(f"{stack.sandbox_url}/_sandbox/log", params={"key": request_id}, timeout=5).json()
    return [entry["body"] for entry in answer["requests"]]


# -- whole and streamed, to every model type ---------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_create_answers_a_response_object(stack, model) -> None:
    response = client(stack).responses.create(model=model, input="hello there", instructions="Be brief.")
    assert response.object == "response" and response.status == "completed"
    assert response.model == model  # the requested name, never the upstream id
    assert response.id.startswith("resp_")
    assert response.output_text == "Sandbox reply: hello there"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0


@pytest.mark.parametrize("model", MODELS)
def test_stream_carries_the_event_sequence_codex_reads(stack, model) -> None:
    with client(stack).responses.stream(model=model, input="stream this") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                 "response.output_text.done", "response.output_item.done"):
        assert kind in kinds, kinds
    assert kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.output_text == "Sandbox reply: stream this"
    assert final.id == events[0].response.id and final.model == model
    assert final.usage.output_tokens > 0 and final.usage.output_tokens_details.reasoning_tokens == 0


@pytest.mark.parametrize("model", MODELS)
def test_a_function_tool_round_trip(stack, model) -> None:
    """The model calls the client's tool; the client sends the result back with the call (as Codex
    does, ``store: false``); the model answers from it."""
    api = client(stack)
    ask = [{"role": "user", "content": '[[sandbox tool=get_weather args={"city": "Paris"}]] weather?'}]
    first = api.responses.create(model=model, input=ask, tools=[WEATHER], store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments)["city" if model != "gemini" else "query"]  # Vertex's stand-in: query
    follow = [*ask, calls[0].model_dump(exclude_none=True),
              {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21 C"}]
    with api.responses.stream(model=model, input=follow, tools=[WEATHER], store=False) as stream:
        final = stream.get_final_response()
    assert final.output_text == "Sandbox reply: tool said sunny, 21 C"


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_tool_call_arrives_as_its_item(stack, model) -> None:
    ask = '[[sandbox tool=get_weather args={"city": "Oslo"}]] weather?'
    with client(stack).responses.stream(model=model, input=ask, tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.done" in kinds
    done = [event.item for event in events if event.type == "response.output_item.done"]
    assert [item.type for item in done] == ["function_call"] and done[0].name == "get_weather"
    assert final.output[-1].call_id == done[0].call_id


@pytest.mark.parametrize("model", MODELS)
def test_a_failure_after_the_first_event_ends_the_stream_with_response_failed(stack, model) -> None:
    with client(stack).responses.stream(model=model, input="[[sandbox error_after=2]] one two three four") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError):  # the SDK: no response.completed
            stream.get_final_response()
    assert events[0].type == "response.created"
    assert events[-1].type == "response.failed"
    assert events[-1].response.id == events[0].response.id  # the SDK checks it
    assert events[-1].response.error.code == "server_error"  # what Codex retries
    assert [event.sequence_number for event in events] == list(range(len(events)))


@pytest.mark.parametrize("model", ("gpt", "claude"))
def test_a_broken_provider_stream_ends_with_the_gateways_response_failed(stack, model) -> None:
    """The provider drops the connection mid-stream: the passed-through stream gets response.failed
    from the API (the provider sent none), the translated one from the worker's translator."""
    with client(stack).responses.stream(model=model, input="[[sandbox fail_after=2]] one two three four") as stream:
        events = list(stream)
    assert events[-1].type == "response.failed", [event.type for event in events]
    assert events[-1].response.id == events[0].response.id
    assert events[-1].response.error.code == "server_error"
    assert events[-1].sequence_number == len(events) - 1


@pytest.mark.parametrize("model", ("gpt", "local"))
def test_a_failure_before_the_first_event_is_an_http_error(stack, model) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(stack).responses.create(model=model, input="[[sandbox fail=400]] no", stream=True)
    assert refused.value.status_code == 400


# -- store and previous_response_id ------------------------------------------------------------------

@pytest.mark.parametrize("model", ("claude", "gpt"))
def test_previous_response_id_continues_and_only_its_owner_may_use_it(stack, model) -> None:
    alice, bob = client(stack), client(stack, BOB_TOKEN)
    first = alice.responses.create(model=model, input="my name is Alice and I like green")
    second = alice.responses.create(model=model, input="what is my name", previous_response_id=first.id)
    assert second.output_text == "Sandbox reply: what is my name"
    # The provider saw the first turn too: more input tokens than the question alone.
    alone = alice.responses.create(model=model, input="what is my name", store=False)
    assert second.usage.input_tokens > alone.usage.input_tokens + 8

    assert alice.responses.retrieve(first.id).output_text == first.output_text
    unknown = requests.get(f"{stack.url}/v1/responses/resp_unknown0", timeout=10,
                           headers={"Authorization": f"Bearer {BOB_TOKEN}"})
    assert unknown.status_code == 404
    for call in (lambda: bob.responses.retrieve(first.id), lambda: bob.responses.delete(first.id),
                 lambda: bob.responses.create(model=model, input="and mine?", previous_response_id=first.id)):
        with pytest.raises(openai.NotFoundError) as refused:
            call()
        # The same answer as for an id nobody has: nothing tells bob that alice's exists.
        body = refused.value.response.json()
        assert body["error"]["message"] == f"No response found with id '{first.id}'."
        assert body["error"]["code"] == unknown.json()["error"]["code"] == "not_found"

    alice.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(first.id)
    assert alice.responses.retrieve(second.id).id == second.id


def test_a_streamed_translated_response_is_kept_and_continued(stack) -> None:
    api = client(stack)
    with api.responses.stream(model="gemini", input="remember the word cobalt") as stream:
        first = stream.get_final_response()
    assert api.responses.retrieve(first.id).output_text == "Sandbox reply: remember the word cobalt"
    with api.responses.stream(model="local", input="which word", previous_response_id=first.id) as stream:
        second = stream.get_final_response()
    assert second.previous_response_id == first.id


def test_store_false_keeps_nothing(stack) -> None:
    api, redis = client(stack), stack.redis()
    before = set(redis.scan_iter("aigw:response:*"))
    for model in ("local", "gpt"):
        kept = api.responses.create(model=model, input="forget me", store=False)
        with pytest.raises(openai.NotFoundError):
            api.responses.retrieve(kept.id)
        with pytest.raises(openai.NotFoundError):
            api.responses.create(model=model, input="again", previous_response_id=kept.id)
    assert set(redis.scan_iter("aigw:response:*")) == before


def test_a_response_continues_only_where_its_conversation_is_kept(stack) -> None:
    api = client(stack)
    relayed = api.responses.create(model="gpt", input="kept by the provider")
    kept = api.responses.create(model="claude", input="kept by the gateway")
    for model, previous in (("claude", relayed.id), ("native", relayed.id), ("gpt", kept.id)):
        with pytest.raises(openai.BadRequestError) as refused:
            api.responses.create(model=model, input="go on", previous_response_id=previous)
        assert refused.value.body["param"] == "previous_response_id"


# -- refused ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("background", True), ("conversation", "conv_1"),
                                          ("prompt", {"id": "pmpt_1"})])
def test_state_the_gateway_does_not_keep_is_refused_naming_the_field(stack, field, value) -> None:
    for model in ("gpt", "claude"):
        with pytest.raises(openai.BadRequestError) as refused:
            client(stack).responses.create(model=model, input="hi", extra_body={field: value})
        assert refused.value.body["param"] == field and f"'{field}'" in refused.value.body["message"]


@pytest.mark.parametrize("method, path, named", [
    ("GET", "/v1/responses/resp_1/input_items", "input_items"),
    ("POST", "/v1/responses/resp_1/cancel", "cancel"),
    ("POST", "/v1/responses/input_tokens", "input_tokens"),
])
def test_paths_the_gateway_does_not_serve_are_404_naming_them(stack, method, path, named) -> None:
    answer = requests.request(method, f"{stack.url}{path}", json={"model": "gpt", "input": "hi"}, timeout=10,
                              headers={"Authorization": f"Bearer {DEMO_TOKEN}"})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "not_found" and named in error["message"]
    anonymous = requests.request(method, f"{stack.url}{path}", timeout=10)
    assert anonymous.status_code == 401  # a credential first, as on every /v1/ path


def test_a_built_in_tool_is_refused_unless_dropped(stack) -> None:
    web = [{"type": "web_search"}]
    with pytest.raises(openai.BadRequestError) as refused:
        client(stack).responses.create(model="local", input="hi", tools=web)
    assert refused.value.body["param"] == "tools[0].type"
    answer = client(stack).responses.with_raw_response.create(model="claude", input="hi", tools=web)
    assert answer.parse().output_text == "Sandbox reply: hi"
    assert answer.headers.get("x-aigw-dropped-params") == "tools.web_search"
    streamed = requests.post(f"{stack.url}/v1/responses", timeout=30, json={
        "model": "claude", "input": "hi", "tools": web, "stream": True},
        headers={"Authorization": f"Bearer {DEMO_TOKEN}", "X-Request-Id": "dropped-stream"})
    assert "event: response.completed" in streamed.text
    assert streamed.headers.get("x-aigw-dropped-params") == "tools.web_search"  # said before the stream commits
    assert stack.access_record("dropped-stream")["dropped_params"] == ["tools.web_search"]


# -- Codex's own request, passed through --------------------------------------------------------------

def test_codex_s_request_reaches_the_provider_untouched_but_the_model(stack) -> None:
    """Codex 0.171.0's first request of a tool round trip (tests/clients/fixtures): an
    additional_tools item with namespace and custom tools, ids on every item, client_metadata..."""
    fixture = json.loads((ROOT / "tests/clients/fixtures/codex-0.171.0-tool.json").read_text())
    sent = fixture["requests"][0]["body"]
    answer = requests.post(f"{stack.url}/v1/responses", json={**sent, "model": "gpt"}, timeout=30,
                           headers={"Authorization": f"Bearer {DEMO_TOKEN}", "X-Request-Id": "codex-shaped-1"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    assert "event: response.completed" in answer.text
    received = wait_for(lambda: sandbox_bodies(stack, "codex-shaped-1"), timeout=5, message="the sandbox's log")
    assert received == [{**sent, "model": "gpt-upstream"}]


def sse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_codex_s_tool_round_trip_on_an_anthropic_model(stack) -> None:
    """Codex 0.171.0's request for a model it does not know (function tools, a namespace, web_search,
    reasoning, include, client_metadata...), translated for an Anthropic model whose drop_params lists
    tools.web_search: the call comes back as the item Codex dispatches, and its output gets the answer."""
    fixture = json.loads((ROOT / "tests/clients/fixtures/codex-0.171.0-tool-unknown-model.json").read_text())
    sent = {**fixture["requests"][0]["body"], "model": "claude"}
    ask = sent["input"][-1]["content"][0]
    ask["text"] = '[[sandbox tool=exec_command args={"cmd": "echo tool-ran-ok"}]] ' + ask["text"]
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}"}
    first = requests.post(f"{stack.url}/v1/responses", json=sent, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    events = sse_events(first.text)
    assert events[-1][0] == "response.completed"
    done = [data["item"] for name, data in events if name == "response.output_item.done"]
    assert [(item["type"], item["name"]) for item in done] == [("function_call", "exec_command")]
    assert json.loads(done[0]["arguments"]) == {"cmd": "echo tool-ran-ok"}
    follow = {**sent, "input": [*sent["input"], done[0], {"type": "function_call_output", "call_id": done[0]["call_id"],
                                                            "output": "tool-ran-ok"}]}
    second = sse_events(requests.post(f"{stack.url}/v1/responses", json=follow, headers=headers, timeout=30).text)
    final = second[-1][1]["response"]
    assert second[-1][0] == "response.completed" and final["output"][-1]["content"][0]["text"] == \
        "Sandbox reply: tool said tool-ran-ok"
    assert final["usage"]["input_tokens"] > 0 and "reasoning_tokens" in final["usage"]["output_tokens_details"]


def test_codex_s_default_model_request_on_an_anthropic_model(stack) -> None:
    """Codex's default ("responses-lite") request: its tools in an additional_tools item, among them the
    custom tool exec in the namespace functions; a call of it comes back as the custom_tool_call Codex runs."""
    fixture = json.loads((ROOT / "tests/clients/fixtures/codex-0.171.0-tool.json").read_text())
    sent = {**fixture["requests"][0]["body"], "model": "claude"}
    ask = sent["input"][-1]["content"][0]
    ask["text"] = '[[sandbox tool=functions__exec args={"input": "text(1)"}]] ' + ask["text"]
    answer = requests.post(f"{stack.url}/v1/responses", json=sent, timeout=30,
                           headers={"Authorization": f"Bearer {DEMO_TOKEN}"})
    assert answer.status_code == 200, answer.text
    done = [data["item"] for name, data in sse_events(answer.text) if name == "response.output_item.done"]
    # reasoning.effort low: Anthropic thought first, its signed thinking sealed for Codex to send back.
    assert done[0]["type"] == "reasoning" and done[0]["encrypted_content"]
    calls = [(item["type"], item["name"], item["input"]) for item in done[1:]]
    assert calls == [("custom_tool_call", "exec", "text(1)")]


# -- accounting ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ("gpt", "claude"))
def test_the_access_record_counts_the_tokens(stack, model) -> None:
    answer = client(stack).responses.with_raw_response.create(model=model, input="count these words",
                                                              extra_headers={"X-Request-Id": f"acct-{model}"})
    usage = answer.parse().usage
    record = stack.access_record(f"acct-{model}")
    assert record["path"] == "/v1/responses" and record["status"] == 200
    assert record["prompt_tokens"] == usage.input_tokens and record["completion_tokens"] == usage.output_tokens


def test_the_gateway_retries_a_passed_through_request_the_provider_failed(stack) -> None:
    answer = client(stack).responses.with_raw_response.create(
        model="gpt", input="[[sandbox fail=503 times=1]] again", extra_headers={"X-Request-Id": "retried-1"})
    assert answer.parse().output_text == "Sandbox reply: again"
    assert stack.access_record("retried-1")["attempts"] == 2


def test_rate_limits_hold_with_openai_s_headers(stack) -> None:
    api = client(stack)
    for _ in range(2):
        answer = api.responses.with_raw_response.create(model="limited", input="hi")
        assert answer.headers["x-ratelimit-limit-requests"] == "2"
    with pytest.raises(openai.RateLimitError) as refused:
        api.responses.create(model="limited", input="hi")
    assert refused.value.body["code"] == "rate_limited" and refused.value.response.headers["retry-after"]
