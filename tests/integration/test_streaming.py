"""Every client, every provider: the official SDKs, streaming and not, through Redis."""

from __future__ import annotations

import threading
import time

import anthropic
import openai
import pytest
import requests

from sandbox.gitlab import DEMO_TOKEN
from tests.harness import Stack, wait_for

CONFIG = """
models:
  - name: chat
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
  - name: claude
    type: anthropic
    base_url: "{sandbox}"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
  - name: narrow
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    stream_idle_timeout: 2s
    workers: 1
    concurrency: 1
  - name: gemini
    type: vertex
    project: standin-project
    location: us-central1
    base_url: "{vertex}/v1"
    credentials_file: "{vertex_credentials}"
    model: gemini-2.0-flash
    timeout: 10s
    workers: 1
  - name: gemini3               # signs its function calls (thoughtSignature) and wants them back
    type: vertex
    project: standin-project
    location: us-central1
    base_url: "{vertex}/v1"
    credentials_file: "{vertex_credentials}"
    model: gemini-3-pro-preview
    timeout: 10s
    workers: 1
  - name: budget
    type: anthropic
    base_url: "{sandbox}"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
    rate_limit: {tokens_per_minute: 100000}
"""
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look something up",
                                         "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}
ANTHROPIC_TOOL = {"name": "lookup", "description": "Look something up",
                  "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with Stack(tmp_path_factory.mktemp("streams"), CONFIG, web_threads=32,
               env={"STREAM_KEEPALIVE_INTERVAL": "0.5"}) as gateway:
        yield gateway


@pytest.fixture
def oai(stack):
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=DEMO_TOKEN, max_retries=0)


@pytest.fixture
def claude(stack):
    return anthropic.Anthropic(base_url=stack.url, api_key=DEMO_TOKEN, max_retries=0)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# -- OpenAI clients ----------------------------------------------------------------

@pytest.mark.parametrize("model", ["chat", "claude", "gemini"])
def test_openai_sdk_streams_from_each_model_type(oai, model):
    whole = oai.chat.completions.create(model=model, messages=user("one two three four")).choices[0].message.content
    chunks = list(oai.chat.completions.create(model=model, messages=user("one two three four"), stream=True,
                                              stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole == "Sandbox reply: one two three four"
    assert all(c.model == model for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6


def test_usage_chunk_only_when_asked(oai):
    chunks = list(oai.chat.completions.create(model="chat", messages=user("no usage"), stream=True))
    assert all(getattr(c, "usage", None) is None for c in chunks)


@pytest.mark.parametrize("model", ["chat", "claude", "gemini", "gemini3"])
def test_openai_sdk_tool_round_trip(oai, model):
    first = oai.chat.completions.create(model=model, tools=[TOOL], messages=user("[[sandbox tool=lookup]] weather"))
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "lookup" and "weather" in call.function.arguments
    follow_up = user("[[sandbox tool=lookup]] weather") + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    second = oai.chat.completions.create(model=model, tools=[TOOL], messages=follow_up)
    assert second.choices[0].message.content == "Sandbox reply: tool said sunny"
    streamed = list(oai.chat.completions.create(model=model, tools=[TOOL], stream=True,
                                                messages=user("[[sandbox tool=lookup]] weather")))
    arguments = "".join(d.function.arguments or "" for c in streamed if c.choices
                        for d in (c.choices[0].delta.tool_calls or []))
    assert arguments == call.function.arguments


# -- Anthropic clients -------------------------------------------------------------

@pytest.mark.parametrize("model", ["claude", "chat", "gemini"])
def test_anthropic_sdk_streaming_and_not_to_each_model_type(claude, model):
    message = claude.messages.create(model=model, max_tokens=50, messages=user("alpha beta"),
                                     system="be brief")
    assert message.content[0].text == "Sandbox reply: alpha beta"
    assert message.model == model and message.stop_reason == "end_turn"
    with claude.messages.stream(model=model, max_tokens=50, messages=user("alpha beta")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Sandbox reply: alpha beta"
    assert final.usage.output_tokens == 4 and final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["claude", "chat", "gemini", "gemini3"])
def test_anthropic_sdk_tool_round_trip(claude, model):
    first = claude.messages.create(model=model, max_tokens=50, tools=[ANTHROPIC_TOOL],
                                   messages=user("[[sandbox tool=lookup]] rain"))
    use = next(block for block in first.content if block.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.name == "lookup"
    second = claude.messages.create(model=model, max_tokens=50, tools=[ANTHROPIC_TOOL], messages=[
        *user("[[sandbox tool=lookup]] rain"),
        {"role": "assistant", "content": [use.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "wet"}]}])
    assert second.content[0].text == "Sandbox reply: tool said wet"


def test_anthropic_sdk_lists_models_and_gets_its_own_errors(stack, claude):
    page = claude.models.list()
    assert {m.id for m in page.data} >= {"chat", "claude"}
    with pytest.raises(anthropic.AuthenticationError) as refused:
        anthropic.Anthropic(base_url=stack.url, api_key="glpat-wrong", max_retries=0).messages.create(
            model="claude", max_tokens=5, messages=user("x"))
    assert refused.value.body["type"] == "error"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="nope", max_tokens=5, messages=user("x"))


# -- failures, silence, disconnects ------------------------------------------------

def test_errors_before_the_first_chunk_are_plain_http_errors(oai, claude):
    with pytest.raises(openai.BadRequestError):
        list(oai.chat.completions.create(model="chat", messages=user("[[sandbox fail=400]] no"), stream=True))
    with pytest.raises(anthropic.BadRequestError):
        with claude.messages.stream(model="claude", max_tokens=20, messages=user("[[sandbox fail=400]] no")) as s:
            list(s.text_stream)
    retried = list(oai.chat.completions.create(model="chat", stream=True,
                                               messages=user("[[sandbox fail=503 times=2]] again")))
    assert "".join(c.choices[0].delta.content or "" for c in retried if c.choices) == "Sandbox reply: again"


@pytest.mark.parametrize("directive", ["fail_after=2", "error_after=2"])
def test_a_mid_stream_failure_surfaces_as_an_error_never_a_clean_end(stack, oai, claude, directive):
    with pytest.raises(openai.APIError):
        list(oai.chat.completions.create(model="chat", stream=True,
                                         messages=user(f"[[sandbox {directive}]] a b c d e f")))
    with pytest.raises(anthropic.APIError):
        with claude.messages.stream(model="claude", max_tokens=50,
                                    messages=user(f"[[sandbox {directive}]] a b c d e f")) as s:
            list(s.text_stream)
    raw = requests.post(f"{stack.url}/v1/chat/completions", stream=True, timeout=30,
                        headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
                        json={"model": "chat", "stream": True, "messages": user(f"[[sandbox {directive}]] a b c d")})
    body = b"".join(raw.iter_content(None)).decode()
    assert raw.status_code == 200 and "data: [DONE]" not in body and '"error"' in body


def test_a_long_silent_upstream_is_kept_alive(stack, oai):
    raw = requests.post(f"{stack.url}/v1/chat/completions", stream=True, timeout=30,
                        headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
                        json={"model": "chat", "stream": True, "messages": user("[[sandbox silence_ms=2500]] wait")})
    body = b"".join(raw.iter_content(None)).decode()
    assert body.count(": keep-alive") >= 2  # STREAM_KEEPALIVE_INTERVAL is 0.5 s here
    assert body.rstrip().endswith("data: [DONE]")
    chunks = list(oai.chat.completions.create(model="chat", stream=True,
                                              messages=user("[[sandbox silence_ms=1500]] patient")))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Sandbox reply: patient"


def test_a_provider_silent_past_the_idle_timeout_ends_the_stream_with_an_error(stack, oai):
    started = time.monotonic()
    with pytest.raises(openai.APIError) as failed:
        list(oai.chat.completions.create(model="narrow", stream=True,  # stream_idle_timeout: 2s
                                         messages=user("[[sandbox silence_ms=4000]] too quiet")))
    assert "sent nothing for 2s" in str(failed.value)
    assert time.monotonic() - started < 4.0  # cut at the idle timeout, not when the provider spoke again


def test_a_client_that_disconnects_frees_its_worker(stack):
    words = " ".join(f"w{i}" for i in range(200))
    raw = requests.post(f"{stack.url}/v1/chat/completions", stream=True, timeout=30,
                        headers={"Authorization": f"Bearer {DEMO_TOKEN}", "X-Request-Id": "leaver"},
                        json={"model": "narrow", "stream": True,
                              "messages": user(f"[[sandbox chunk_delay_ms=100]] {words}")})
    assert next(raw.iter_content(None))
    raw.close()  # the client walks away mid-stream
    left = time.monotonic()

    def closed():
        streams = requests.get(f"{stack.sandbox_url}/_sandbox/streams", timeout=5).json()
        return [s for s in streams if s["key"] == "leaver" and s["ended"]]

    ended = wait_for(closed, timeout=10, message="the worker to close the provider's stream")
    assert ended[0]["reason"] == "client_closed"
    started = time.monotonic()
    after = stack.chat("narrow", "next please", timeout=10)  # the only slot of this model is free again
    assert after.status_code == 200
    assert time.monotonic() - started < 2.0 and time.monotonic() - left < 8.0


def test_streamed_usage_settles_the_token_limit(stack, claude):
    with claude.messages.stream(model="budget", max_tokens=50, messages=user("count these words")) as s:
        list(s.text_stream)
        final = s.get_final_message()
    used = final.usage.input_tokens + final.usage.output_tokens
    amounts = stack.redis().hget("aigw:rl:model:budget:tokens:60:amounts", "_sum")
    wait_for(lambda: int(stack.redis().hget("aigw:rl:model:budget:tokens:60:amounts", "_sum") or 0) == used,
             timeout=5, message=f"the reservation to settle to {used} (was {amounts})")


# -- embeddings and legacy completions ---------------------------------------------

@pytest.mark.parametrize("model", ["chat", "gemini"])
def test_embeddings(oai, model):
    vectors = oai.embeddings.create(model=model, input=["one", "two"], encoding_format="float")
    assert len(vectors.data) == 2 and vectors.model == model
    assert vectors.data[0].embedding != vectors.data[1].embedding
    default = oai.embeddings.create(model=model, input=["one", "two"])  # the SDK asks for base64 by default
    assert default.data[0].embedding == pytest.approx(vectors.data[0].embedding, rel=1e-6)  # float32 on the wire



def test_an_anthropic_model_has_no_embeddings(oai):
    with pytest.raises(openai.BadRequestError) as refused:
        oai.embeddings.create(model="claude", input="x")
    assert "does not offer embeddings" in refused.value.message


def test_legacy_completions_with_suffix_streaming_and_not(oai):
    whole = oai.completions.create(model="chat", prompt="def add(a, b):", suffix="return total", max_tokens=30)
    text = whole.choices[0].text
    assert text.startswith("Sandbox completion of:") and "[before: return total]" in text
    streamed = "".join(c.choices[0].text for c in oai.completions.create(
        model="chat", prompt="def add(a, b):", suffix="return total", max_tokens=30, stream=True) if c.choices)
    assert streamed == whole.choices[0].text
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model="claude", prompt="x")


def test_many_streams_at_once(stack, oai):
    results, errors = [], []

    def one(i):
        try:
            chunks = oai.chat.completions.create(model="chat", stream=True,
                                                 messages=user(f"[[sandbox chunk_delay_ms=20]] n{i} a b"))
            results.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sorted(results) == sorted(f"Sandbox reply: n{i} a b" for i in range(12))
