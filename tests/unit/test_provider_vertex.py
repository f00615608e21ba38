"""The Vertex AI adapter against the Vertex stand-in: URLs, OAuth tokens, chat, streams, embeddings."""

from __future__ import annotations

import json
import socket
import threading
import time
import types
import uuid

import pytest
import requests

from sandbox.vertex import make_server, serve_in_thread
from shared.errors import UnsupportedParameter, UpstreamAuthError, UpstreamError
from tests.harness import wait_for
from workers.providers.vertex import TimeoutRequest, VertexChatStream, VertexProvider
from workers.translate.gemini import GeminiStreamToChat
from workers.upstream import UpstreamClient


def model_config(base_url, credentials_file, **overrides):
    fields = dict(name="gemini", type="vertex", base_url=base_url, api_key=None, model="gemini-2.5-flash",
                  project="my-project", location="europe-west4", credentials_file=credentials_file, timeout=30.0,
                  retry_attempts=1, verify_tls=True, ca_file=None, max_output_tokens=1024, reasoning_control="budget")
    fields.update(overrides)
    return types.SimpleNamespace(**fields)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("vertex") / "sa.json"
    srv, base = serve_in_thread(credentials_path=str(path))
    yield srv, base, str(path)
    srv.stop()


@pytest.fixture
def provider(standin):
    srv, base, path = standin
    return VertexProvider(model_config(f"{base}/v1/", path))


def issued(base) -> int:
    return requests.get(f"{base}/_vertex/tokens", timeout=5).json()["issued"]


def send(request, stream=False):
    return requests.post(request.url, json=request.body, headers=request.headers, timeout=10, stream=stream)


def chat_body(text, **extra):
    return {"model": "gemini", "messages": [{"role": "user", "content": text}], **extra}



# --- URLs and headers ----------------------------------------------------------------------------


def test_urls(provider, standin):
    srv, base, path = standin
    prefix = f"{base}/v1/projects/my-project/locations/europe-west4/publishers/google/models/gemini-2.5-flash"
    assert provider.chat_request(chat_body("hi"), request_id="r").url == f"{prefix}:generateContent"
    assert provider.chat_request(chat_body("hi"), request_id="r", stream=True).url == (
        f"{prefix}:streamGenerateContent?alt=sse")
    assert provider.embeddings_request({"input": "x"}, request_id="r").url == f"{prefix}:predict"


@pytest.mark.parametrize("location, host", [("us-central1", "us-central1-aiplatform.googleapis.com"),
                                            ("global", "aiplatform.googleapis.com")])
def test_default_base_url(location, host):
    adapter = VertexProvider(model_config(None, None, location=location))
    assert adapter.endpoint("generateContent") == (
        f"https://{host}/v1/projects/my-project/locations/{location}/publishers/google/models/"
        "gemini-2.5-flash:generateContent")


def test_request_carries_a_valid_token_and_request_id(provider, standin):
    srv, base, path = standin
    rid = uuid.uuid4().hex
    request = provider.chat_request(chat_body("hi"), request_id=rid)
    assert request.headers["Authorization"].startswith("Bearer ya29.standin-")
    assert request.headers["X-Request-Id"] == rid
    assert request.body == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    assert send(request).status_code == 200
    calls = requests.get(f"{base}/_vertex/calls", timeout=5).json()["calls"]
    assert [(c["model"], c["authorized"]) for c in calls if c["request_id"] == rid] == [("gemini-2.5-flash", True)]


def test_token_is_cached(provider, standin):
    srv, base, path = standin
    before = issued(base)
    first = provider.chat_request(chat_body("a"), request_id="1").headers["Authorization"]
    second = provider.embeddings_request({"input": "b"}, request_id="2").headers["Authorization"]
    assert first == second
    assert issued(base) == before + 1


def test_concurrent_first_use_fetches_one_token(standin):
    srv, base, path = standin
    adapter = VertexProvider(model_config(f"{base}/v1", path))
    before = issued(base)
    barrier = threading.Barrier(8)
    tokens, errors = [], []

    def call():
        barrier.wait()
        try:
            tokens.append(adapter.chat_request(chat_body("x"), request_id="c").headers["Authorization"])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert len(tokens) == 8 and len(set(tokens)) == 1
    assert issued(base) == before + 1


def test_refreshes_after_the_token_expires(tmp_path):
    path = tmp_path / "sa.json"
    srv, base = serve_in_thread(credentials_path=str(path), token_ttl=0.5)
    try:
        adapter = VertexProvider(model_config(f"{base}/v1", str(path)))
        first = adapter.chat_request(chat_body("hi"), request_id="1")
        assert send(first).status_code == 200
        wait_for(lambda: send(first).status_code == 401, timeout=10,  # the stand-in now refuses that token
                 message="the first token to expire")
        second = adapter.chat_request(chat_body("hi"), request_id="2")
        assert second.headers["Authorization"] != first.headers["Authorization"]
        assert send(second).status_code == 200
        assert issued(base) == 2
    finally:
        srv.stop()


def test_refusal_comes_before_any_token(tmp_path):
    adapter = VertexProvider(model_config("http://127.0.0.1:9/v1", str(tmp_path / "missing.json")))
    with pytest.raises(UnsupportedParameter):
        adapter.chat_request(chat_body("hi", n=3), request_id="r")


# --- credential failures -------------------------------------------------------------------------


def test_missing_credentials_file(tmp_path):
    missing = tmp_path / "nope.json"
    adapter = VertexProvider(model_config("http://127.0.0.1:9/v1", str(missing)))
    with pytest.raises(UpstreamAuthError) as info:
        adapter.chat_request(chat_body("hi"), request_id="r")
    assert str(missing) in info.value.message
    assert "No such file" in info.value.message
    assert info.value.status == 502 and info.value.code == "upstream_auth_error"


def test_invalid_credentials_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"type": "service_account", "client_email": "x@y"}))
    adapter = VertexProvider(model_config("http://127.0.0.1:9/v1", str(bad)))
    with pytest.raises(UpstreamAuthError) as info:
        adapter.embeddings_request({"input": "x"}, request_id="r")
    assert str(bad) in info.value.message and "not a valid service-account key" in info.value.message


def test_a_fixed_credentials_file_heals(standin, tmp_path):
    srv, base, path = standin
    later = tmp_path / "later.json"
    adapter = VertexProvider(model_config(f"{base}/v1", str(later)))
    with pytest.raises(UpstreamAuthError):
        adapter.chat_request(chat_body("hi"), request_id="r")
    later.write_text(open(path).read())
    assert send(adapter.chat_request(chat_body("hi"), request_id="r")).status_code == 200


def test_unknown_key_is_refused_without_leaking_it(standin, tmp_path):
    srv, base, path = standin
    # Another stand-in's key file: the right format, but a key this stand-in does not know.
    other = make_server(credentials_path=str(tmp_path / "other.json"))
    other.server_close()
    info = json.loads((tmp_path / "other.json").read_text())
    info["token_uri"] = f"{base}/token"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(info))
    adapter = VertexProvider(model_config(f"{base}/v1", str(forged)))
    with pytest.raises(UpstreamAuthError) as err:
        adapter.chat_request(chat_body("hi"), request_id="r")
    assert err.value.message.startswith("Model 'gemini': could not get a Google access token: ")
    assert "invalid_grant" in err.value.message
    assert "PRIVATE KEY" not in err.value.message and info["private_key"][40:80] not in err.value.message


def test_unreachable_token_endpoint(standin, tmp_path):
    srv, base, path = standin
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    info = json.loads(open(path).read())
    info["token_uri"] = f"http://127.0.0.1:{port}/token"
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(info))
    adapter = VertexProvider(model_config(f"{base}/v1", str(moved)))
    with pytest.raises(UpstreamAuthError) as err:
        adapter.chat_request(chat_body("hi"), request_id="r")
    assert "could not get a Google access token" in err.value.message


def test_token_calls_are_bounded():
    seen = []

    class Session(requests.Session):
        def request(self, method, url, **kwargs):
            seen.append(kwargs.get("timeout"))
            response = requests.Response()
            response.status_code, response._content = 200, b"{}"
            return response

    transport = TimeoutRequest(Session(), timeout=10.0)
    transport("http://token.example/token", method="POST")  # google-auth passes no timeout: 120 s by default
    transport("http://token.example/token", method="POST", timeout=300)
    transport("http://token.example/token", method="POST", timeout=2)
    assert seen == [10.0, 10.0, 2]


# --- chat and embeddings through the stand-in ----------------------------------------------------


def test_chat_round_trip(provider):
    answer = send(provider.chat_request(chat_body("hello there", max_tokens=50), request_id="r")).json()
    out = provider.chat_response(answer, requested_model="my-alias")
    assert out["model"] == "my-alias"
    assert out["id"] == f"chatcmpl-{answer['responseId']}"
    assert out["choices"][0]["message"]["content"] == "Sandbox reply: hello there"
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


def test_tool_round_trip(provider):
    first = send(provider.chat_request(chat_body("weather in Oslo [[sandbox tool=get_weather]]"), request_id="1"))
    message = provider.chat_response(first.json(), requested_model="m")["choices"][0]["message"]
    call = message["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"query": "weather in Oslo"}'}
    body = {"model": "m", "messages": [
        {"role": "user", "content": "weather in Oslo [[sandbox tool=get_weather]]"}, message,
        {"role": "tool", "tool_call_id": call["id"], "content": "snow"}]}
    second = provider.chat_response(send(provider.chat_request(body, request_id="2")).json(), requested_model="m")
    assert second["choices"][0]["message"]["content"] == "Sandbox reply: tool said snow"


def test_through_the_upstream_client(provider):
    """The gateway's own HTTP client, retries included, with the adapter's request."""
    client = UpstreamClient(types.SimpleNamespace(**{**vars(provider.model), "retry_attempts": 2}))
    rid = uuid.uuid4().hex
    request = provider.chat_request(chat_body("retry me [[sandbox fail=503 times=1]]"), request_id=rid)
    result = client.post_json(request, deadline=time.time() + 20)
    assert result.attempts == 2
    out = provider.chat_response(result.data, requested_model="m")
    assert out["choices"][0]["message"]["content"] == "Sandbox reply: retry me"


def test_embeddings(provider):
    request = provider.embeddings_request({"model": "e", "input": ["hello world", "bye"], "dimensions": 4},
                                          request_id="r")
    assert request.body == {"instances": [{"content": "hello world"}, {"content": "bye"}],
                            "parameters": {"outputDimensionality": 4}}
    answer = send(request)
    assert answer.status_code == 200
    out = provider.embeddings_response(answer.json(), requested_model="alias")
    assert out["model"] == "alias" and out["object"] == "list"
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 4 and all(isinstance(v, float) for v in d["embedding"]) for d in out["data"])
    assert out["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


# --- streaming -----------------------------------------------------------------------------------


def stream_chunks(provider, text, include_usage=True):
    response = send(provider.chat_request(chat_body(text), request_id=uuid.uuid4().hex, stream=True), stream=True)
    assert response.status_code == 200
    stream = provider.chat_stream(requested_model="alias", include_usage=include_usage)
    chunks = []
    for line in response.iter_lines():  # events are separated by blank lines; data lines carry the JSON
        if line.startswith(b"data:"):
            chunks += stream.feed(None, line[len(b"data:"):].decode().strip())
    return stream, chunks + stream.finish()


def test_chat_stream_from_the_standin(provider):
    stream, chunks = stream_chunks(provider, "hello brave new world")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Sandbox reply: hello brave new world"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}
    assert stream.usage == chunks[-1]["usage"]
    assert {c["model"] for c in chunks} == {"alias"} and len({c["id"] for c in chunks}) == 1


def test_chat_stream_tool_call(provider):
    stream, chunks = stream_chunks(provider, "find cats [[sandbox tool=search]]", include_usage=False)
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks if "tool_calls" in c["choices"][0]["delta"]]
    assert [(c["index"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "search", '{"query": "find cats"}')]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_stream_bad_events():
    stream = VertexChatStream(GeminiStreamToChat("m", 0, "id", include_usage=False))
    assert stream.feed(None, "") == []
    with pytest.raises(UpstreamError):
        stream.feed(None, "not json")
    with pytest.raises(UpstreamError) as info:
        stream.feed(None, json.dumps({"error": {"code": 429, "message": "Quota exceeded", "status": "X"}}))
    assert "Quota exceeded" in info.value.message
