"""Token usage, as either wire format reports it."""

from __future__ import annotations


def token_counts(usage: dict) -> tuple[int, int]:
    """(prompt, completion) tokens from OpenAI- or Anthropic-shaped usage."""
    prompt = usage.get("prompt_tokens")
    if prompt is None:
        prompt = sum(usage.get(k) or 0 for k in ("input_tokens", "cache_creation_input_tokens",
                                                 "cache_read_input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens")) or 0
    return int(prompt or 0), int(completion)


def usage_total(usage: dict | None) -> int | None:
    """Total tokens; None when nothing was reported."""
    if not usage:
        return None
    if usage.get("total_tokens") is not None:
        return int(usage["total_tokens"])
    keys = ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens")
    if not any(usage.get(k) is not None for k in keys):
        return None
    return sum(token_counts(usage))
