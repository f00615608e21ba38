"""An Anthropic client's reasoning and context settings, for a target spoken to through the chat pivot (pure).

``thinking`` and ``output_config.effort`` (the request's, and the per-turn one a message may carry)
become the pivot's ``reasoning_effort`` where the model has a reasoning control (its ``reasoning``
setting), and are refused otherwise unless the model's ``drop_params`` lists them (README.md,
"Anthropic clients on other models", has the table). ``context_management`` is accepted where its
edits change nothing once translated.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from shared.errors import InvalidRequest
from workers.translate.drop_params import Dropped
from workers.translate.refusals import refuse_unknown_keys, unsupported_for

_THINKING_KEYS = frozenset({"type", "budget_tokens", "display"})  # display: whether thinking is shown
# anthropic-sdk-python types/output_config_param.py: effort is low, medium, high, xhigh or max; OpenAI's
# reasoning_effort takes the same words (workers/translate/reasoning.py EFFORTS).
ANTHROPIC_EFFORTS = ("low", "medium", "high", "xhigh", "max")
# A thinking budget as an effort: the inverse of reasoning.THINKING_BUDGETS, capped at high, the
# largest effort every reasoning model takes.
_BUDGET_EFFORTS = ((1024, "low"), (8192, "medium"))
# context_management edits that change nothing once translated: earlier thinking never reaches the
# target (_convert_message leaves thinking blocks out), so there is none to clear.
_MOOT_EDIT_PREFIXES = ("clear_thinking_",)


_unsupported = unsupported_for("OpenAI-format models")


def _budget_effort(budget: int) -> str:
    return next((effort for ceiling, effort in _BUDGET_EFFORTS if budget <= ceiling), "high")


def _effort(value: Any, param: str) -> str:
    if value not in ANTHROPIC_EFFORTS:
        raise InvalidRequest(f"'{param}' must be one of {', '.join(ANTHROPIC_EFFORTS)}", param=param)
    return value


def _output_config(value: Any, param: str, *, message: bool) -> tuple[str | None, dict | None]:
    """An ``output_config``: its effort, and its ``format`` as a chat ``response_format``."""
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{param}' must be an object", param=param)
    allowed = ("effort",) if message else ("effort", "format")
    refuse_unknown_keys(value, allowed, _unsupported, equivalent="OpenAI", prefix=f"{param}.")
    effort = _effort(value["effort"], f"{param}.effort") if value.get("effort") is not None else None
    fmt = value.get("format")
    if fmt is None:
        return effort, None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise _unsupported(f"{param}.format", "only a json_schema format with a schema object")
    return effort, {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


def _thinking_effort(thinking: Any) -> tuple[bool, str | None]:
    """Whether ``thinking`` asks for thinking, and the effort its budget stands for."""
    if thinking is None:
        return False, None
    if not isinstance(thinking, dict):
        raise InvalidRequest("'thinking' must be an object", param="thinking")
    refuse_unknown_keys(thinking, _THINKING_KEYS, _unsupported, equivalent="OpenAI", prefix="thinking.")
    kind = thinking.get("type")
    if kind == "disabled":
        return False, None
    if kind == "adaptive":
        return True, None  # the model decides how much: the target's default, unless an effort is given
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise InvalidRequest("'thinking.budget_tokens' must be a positive integer", param="thinking.budget_tokens")
        return True, _budget_effort(budget)
    raise InvalidRequest("'thinking.type' must be enabled, adaptive or disabled", param="thinking.type")


def context_management(value: Any) -> None:
    """Server-side context editing: accepted only where it changes nothing once translated."""
    if not isinstance(value, dict):
        raise InvalidRequest("'context_management' must be an object", param="context_management")
    refuse_unknown_keys(value, ("edits",), _unsupported, equivalent="OpenAI", prefix="context_management.")
    edits = value.get("edits") or []
    if not isinstance(edits, list):
        raise InvalidRequest("'context_management.edits' must be a list", param="context_management.edits")
    for k, edit in enumerate(edits):
        kind = edit.get("type") if isinstance(edit, dict) else None
        if not isinstance(kind, str):
            raise InvalidRequest(f"'context_management.edits[{k}].type' must be a string",
                                 param=f"context_management.edits[{k}].type")
        if not kind.startswith(_MOOT_EDIT_PREFIXES):
            raise _unsupported("context_management", f"the target cannot edit the context as {kind!r} "
                                                     "would; list it in the model's drop_params to send the "
                                                     "whole conversation instead")


def reasoning_effort(body: dict, *, reasoning: bool, drop: Collection[str], dropped: Dropped, out: dict) -> None:
    """``thinking`` and ``output_config`` (the request's, and a message's per-turn one) -> the pivot's
    ``reasoning_effort`` where the target has a reasoning control, else refused unless dropped."""
    wants_thinking, effort = _thinking_effort(body.get("thinking"))
    if wants_thinking and not reasoning:
        raise _unsupported("thinking", "the model has no reasoning control (its 'reasoning' setting)")
    if body.get("output_config") is not None:
        chosen, response_format = _output_config(body["output_config"], "output_config", message=False)
        if chosen is not None and not reasoning:
            raise _unsupported("output_config.effort", "the model has no reasoning control (its 'reasoning' setting)")
        effort = chosen or effort
        if response_format is not None:
            out["response_format"] = response_format
    for i, msg in enumerate(body.get("messages") or []):
        config = msg.get("output_config") if isinstance(msg, dict) else None
        if config is None:
            continue
        chosen, _ = _output_config(config, f"messages[{i}].output_config", message=True)
        if chosen is None:
            continue
        listed = next((path for path in ("output_config.effort", "output_config") if path in drop), None)
        if listed is not None:
            dropped.note(listed)  # the per-turn effort is the same setting as the request's
        elif not reasoning:
            raise _unsupported(f"messages[{i}].output_config.effort",
                               "the model has no reasoning control (its 'reasoning' setting)")
        else:
            effort = chosen  # a later turn's effort holds from that turn on: the last one is the current
    if reasoning and effort is not None:
        out["reasoning_effort"] = effort
