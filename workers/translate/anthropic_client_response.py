"""OpenAI `chat.completion` -> Anthropic Messages response, for Anthropic clients of OpenAI-format models.

Also maps finish reasons, which ``anthropic_client_stream`` shares.
"""

from __future__ import annotations

import json
from typing import Any

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def finish_reason_to_stop_reason(finish_reason: str | None) -> str:
    """OpenAI finish_reason -> Anthropic stop_reason; unknown reasons read as a normal end of turn."""
    return _STOP_REASONS.get(finish_reason or "", "end_turn")


def _tool_input(arguments: Any) -> dict:
    try:
        args = json.loads(arguments)
    except (TypeError, ValueError):
        args = None
    # Anthropic clients expect an object; keep what the model wrote rather than lose it.
    return args if isinstance(args, dict) else {"_raw": arguments}


def chat_response_to_messages(resp: dict, *, requested_model: str) -> dict:
    """OpenAI `chat.completion` object -> Anthropic Messages response (only choices[0])."""
    choices = resp.get("choices") or [{}]
    message = choices[0].get("message") or {}
    text = message.get("content")
    if not isinstance(text, str) or not text:
        text = message.get("refusal")
    content: list[dict] = [{"type": "text", "text": text}] if isinstance(text, str) and text else []
    for k, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or f"toolu_{k}", "name": fn.get("name"),
                        "input": _tool_input(fn.get("arguments"))})
    usage = resp.get("usage") or {}
    return {
        "id": "msg_" + str(resp.get("id") or "").removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": requested_model,
        "content": content,
        "stop_reason": finish_reason_to_stop_reason(choices[0].get("finish_reason")),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.get("prompt_tokens") or 0,
                  "output_tokens": usage.get("completion_tokens") or 0},
    }
