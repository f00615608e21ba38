"""Tests for the sandbox provider's legacy ``/v1/completions`` (with fill-in-the-middle) and ``/v1/embeddings``."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

import openai
import pytest
import requests

from sandbox.provider import embed
from tests.unit.sandbox_fixtures import SECRET, post_stream, sse

# --- legacy completions ---

def complete(base, prompt, headers=None, **extra):
    return requests.post(f"{base}/v1/completions", json={"model": "code-test", "prompt": prompt, **extra},
                         headers=headers, timeout=10)


def test_completions_fill_in_the_middle(base):
    r = requests.post(f"{base}/v1/completions", timeout=5, data=json.dumps(
        {"model": "code-test", "prompt": "def add(a, b):\n    return", "suffix": "\n\nprint(add(1, 2))  # 3"}).encode())
    data = r.json()
    assert data["id"] == "cmpl-sbx-" + hashlib.sha256(r.request.body).hexdigest()[:12]
    assert data["object"] == "text_completion" and data["model"] == "code-test" and isinstance(data["created"], int)
    assert data["choices"] == [{"text": "Sandbox completion of: def add(a, b): return [before: print(add(1, 2)) #]",
                                "index": 0, "logprobs": None, "finish_reason": "stop"}]
    assert data["usage"] == {"prompt_tokens": 8, "completion_tokens": 11, "total_tokens": 19}
    assert complete(base, ["a b", "c"]).json()["choices"][0]["text"] == "Sandbox completion of: a b c"
    cut = complete(base, "x y z", max_tokens=4).json()["choices"][0]
    assert cut == {"text": "Sandbox completion of: x", "index": 0, "logprobs": None, "finish_reason": "length"}
    assert complete(base, "x y z", stop=["y"]).json()["choices"][0]["text"] == "Sandbox completion of: x "
    assert complete(base, "x [[sandbox fail=503]]").status_code == 503
    assert complete(base, [1, 2, 3]).status_code == 400
    assert complete(base, "x", suffix=5).status_code == 400
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    done = client.completions.create(model="code-test", prompt="one two", suffix="three")
    assert done.choices[0].text == "Sandbox completion of: one two [before: three]"


def test_completions_stream(base):
    body = {"model": "code-test", "prompt": "the quick brown fox", "suffix": "jumps over"}
    plain = requests.post(f"{base}/v1/completions", json=body, timeout=5).json()
    r, _ = post_stream(base, "/v1/completions", {**body, "stream": True})
    assert r.headers["Content-Type"] == "text/event-stream"
    events = [data for _, data in sse(r)]
    assert events[-1] == "[DONE]"
    texts = [e["choices"][0]["text"] for e in events[:-2]]
    assert "".join(texts) == plain["choices"][0]["text"] and len(texts) == len(plain["choices"][0]["text"].split())
    assert {e["object"] for e in events[:-1]} == {"text_completion"}
    assert events[-2]["choices"][0] == {"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    chunks = list(client.completions.create(model="code-test", prompt=body["prompt"], suffix=body["suffix"],
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == plain["choices"][0]["text"]
    assert chunks[-1].usage.total_tokens == plain["usage"]["total_tokens"]


def test_completions_auth(keyed):
    assert complete(keyed, "x").status_code == 401
    assert complete(keyed, "x", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    r = requests.post(f"{keyed}/v1/embeddings", json={"model": "e", "input": "x"}, timeout=5)
    assert r.status_code == 401


# --- embeddings ---

def embeddings(base, **body):
    return requests.post(f"{base}/v1/embeddings", json={"model": "embed-test", **body}, timeout=5)


def test_embeddings_are_deterministic(base):
    data = embeddings(base, input=["hello world", "hello world", "other text"]).json()
    assert data["object"] == "list" and data["model"] == "embed-test"
    assert data["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    first, same, other = data["data"]
    assert [d["index"] for d in data["data"]] == [0, 1, 2] and first["object"] == "embedding"
    assert len(first["embedding"]) == 8 and all(-1 <= v <= 1 for v in first["embedding"])
    assert first["embedding"] == same["embedding"] != other["embedding"]
    assert embeddings(base, input="hello world").json()["data"][0]["embedding"] == first["embedding"]
    ints = struct.unpack("<8i", hashlib.sha256(b"hello world").digest())
    assert first["embedding"] == pytest.approx([n / 2**31 for n in ints], abs=1e-7)
    wide = embeddings(base, input="hello world", dimensions=20).json()["data"][0]["embedding"]
    assert len(wide) == 20 and wide[:8] == first["embedding"] and all(-1 <= v <= 1 for v in wide)
    tokens = embeddings(base, input=[[1, 2, 3], [4]]).json()
    assert [d["embedding"] for d in tokens["data"]] == [embed("1 2 3"), embed("4")]
    assert tokens["usage"]["prompt_tokens"] == 4
    assert embeddings(base, input=[5, 6]).json()["data"][0]["embedding"] == embed("5 6")
    for bad in ({"input": None}, {"input": []}, {"input": [1, "a"]}, {"input": "x", "dimensions": 0},
                {"input": "x", "encoding_format": "hex"}):
        r = embeddings(base, **bad)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert embeddings(base, input="x [[sandbox fail=500]]").status_code == 500


def test_embeddings_base64_and_sdk(base):
    floats = embeddings(base, input=["a b", "c"]).json()["data"]
    encoded = embeddings(base, input=["a b", "c"], encoding_format="base64").json()["data"]
    for plain, packed in zip(floats, encoded, strict=True):
        raw = base64.b64decode(packed["embedding"])
        assert list(struct.unpack("<8f", raw)) == plain["embedding"]
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)
    done = client.embeddings.create(model="embed-test", input=["a b", "c"])  # the SDK asks for base64
    assert [d.embedding for d in done.data] == [d["embedding"] for d in floats]
    assert done.usage.prompt_tokens == 3
    explicit = client.embeddings.create(model="embed-test", input="a b", encoding_format="float", dimensions=4)
    assert explicit.data[0].embedding == floats[0]["embedding"][:4]
