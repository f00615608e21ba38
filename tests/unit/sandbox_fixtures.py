"""HTTP helpers shared by the sandbox provider tests (test_sandbox_provider*.py); the provider
itself comes from the ``sandbox``, ``base`` and ``keyed`` fixtures (tests/unit/conftest.py)."""

from __future__ import annotations

import json

import requests

SECRET = "sk-sandbox-secret-123"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


def chat(base, content, headers=None, timeout=10, **extra):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}
    return requests.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=timeout)


def messages(base, content, headers=None, **extra):
    body = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": content}]}
    body.update(extra)
    return requests.post(f"{base}/v1/messages", json=body, headers={**ANTHROPIC_HEADERS, **(headers or {})},
                         timeout=10)


def calls(base, key):
    return requests.get(f"{base}/_sandbox/calls", params={"key": key}, timeout=5).json()["count"]


def sse(response):
    """Parse a streamed requests response into [(event name or None, decoded data)]."""
    events, name, data = [], None, []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif not line and data:
            text = "\n".join(data)
            events.append((name, text if text == "[DONE]" else json.loads(text)))
            name, data = None, []
    return events


def post_stream(base, path, body, headers=None, timeout=10):
    data = json.dumps(body).encode()
    response = requests.post(f"{base}{path}", data=data, timeout=timeout, stream=True,
                             headers={"Content-Type": "application/json", **(headers or {})})
    return response, data


def chat_body(content, **extra):
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}


def messages_body(content, **extra):
    return {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": content}], **extra}


def streams(base):
    return requests.get(f"{base}/_sandbox/streams", timeout=5).json()

