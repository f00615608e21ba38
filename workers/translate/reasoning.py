"""OpenAI's reasoning effort, and what it becomes for targets that control thinking differently.

The pivot carries OpenAI's ``reasoning_effort``; ``anthropic`` turns it into
``thinking`` (a token budget, or adaptive thinking with ``output_config.effort``)
and ``gemini`` into ``thinkingConfig.thinkingBudget``. One table, so both agree.

The pivot's way to carry thinking back (``reasoning_content`` and
``thinking_blocks`` on assistant messages and stream deltas) is described in
``THINKING_BLOCK_TYPES`` below and in README.md ("Reasoning").
"""

from __future__ import annotations

from typing import Any

from shared.errors import InvalidRequest

# openai-python types/shared/reasoning_effort.py: the values OpenAI accepts ("max" is the newest).
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")

# Token budgets per effort. Google maps OpenAI's low/medium/high to 1,024/8,192/24,576 thinking
# tokens (ai.google.dev/gemini-api/docs/openai, "reasoning_effort"); Anthropic's floor is 1,024
# (anthropic-sdk-python types/thinking_config_enabled_param.py: budget_tokens "must be >=1024 and
# less than max_tokens"), so minimal is 1,024 too. The two efforts above high get a larger budget,
# which Gemini clamps to its own cap.
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768, "max": 32768}
MIN_ANTHROPIC_BUDGET = 1024
MAX_GEMINI_BUDGET = 24576  # the largest budget every Gemini 2.5/3 thinking model accepts (Flash's cap)

# Anthropic's adaptive thinking takes an effort instead of a budget (anthropic-sdk-python
# types/output_config_param.py: low, medium, high, xhigh, max); it has no "minimal".
ADAPTIVE_EFFORTS = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "max"}

# Thinking the pivot carries on an assistant message (``thinking_blocks``, in Anthropic's own block
# shapes, signature included) so that it can be sent back unchanged on the next turn, as Anthropic
# requires with tool use. ``reasoning_content`` is the same thinking as plain text, for display.
THINKING_BLOCK_TYPES = ("thinking", "redacted_thinking")


def effort(value: Any, param: str = "reasoning_effort") -> str | None:
    """A valid reasoning effort, or None when none is asked for."""
    if value is None:
        return None
    if value not in EFFORTS:
        raise InvalidRequest(f"'{param}' must be one of {', '.join(EFFORTS)}", param=param)
    return value


def thinking_blocks(value: Any, param: str) -> list[dict]:
    """An assistant message's ``thinking_blocks``, checked to be Anthropic thinking blocks."""
    if not isinstance(value, list):
        raise InvalidRequest(f"'{param}' must be a list", param=param)
    blocks = []
    for k, block in enumerate(value):
        p = f"{param}[{k}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking":
            if not isinstance(block.get("thinking"), str) or not isinstance(block.get("signature"), str):
                raise InvalidRequest(f"'{p}' needs string 'thinking' and 'signature'", param=p)
            blocks.append({"type": "thinking", "thinking": block["thinking"], "signature": block["signature"]})
        elif kind == "redacted_thinking":
            if not isinstance(block.get("data"), str):
                raise InvalidRequest(f"'{p}.data' must be a string", param=f"{p}.data")
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
        else:
            raise InvalidRequest(f"'{p}.type' must be one of {', '.join(THINKING_BLOCK_TYPES)}", param=f"{p}.type")
    return blocks
