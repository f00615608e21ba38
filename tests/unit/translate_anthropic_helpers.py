"""Helpers shared by the OpenAI chat -> Anthropic request tests (test_translate_anthropic_*.py)."""

import pytest

from workers.translate.anthropic import chat_request_to_anthropic

USER = {"role": "user", "content": "hi"}


def convert(**body):
    body.setdefault("model", "claude")
    body.setdefault("messages", [USER])
    return chat_request_to_anthropic(body, upstream_model="claude-x-1", default_max_tokens=1024)


def refused(exc_type, **body) -> str:
    with pytest.raises(exc_type) as info:
        convert(**body)
    return info.value.param
