"""What the sandbox model does on a turn, in any wire format: call the tool a directive names, and reason first
when the request asks for reasoning.

Tool calls. ``[[sandbox tool=NAME]]`` in the last user message makes the model call the request's tool NAME
(a tool the client defines: Codex's ``shell``/``apply_patch``, Claude Code's ``Bash``...), unless
``tool_choice`` is none, with
``{"query": <the message text>}``, or with ``args=<JSON>`` when the directive gives them. A function tool
takes a JSON object; a Responses ``custom`` tool takes a string (``args="..."``; an object is sent as its JSON
text; without args, the message text). A name the request does not define gives an ordinary text answer.
When the newest turn is the tool's result, the model answers "Sandbox reply: tool said <the result>".

Reasoning. OpenAI chat ``reasoning_effort``, Responses ``reasoning.effort`` (neither "none") and Anthropic
``thinking`` of type ``enabled``/``adaptive`` make the model think "Sandbox reasoning (<label>): <subject>",
where the label is the effort (Anthropic: the thinking type, plus ", effort X" from ``output_config.effort``)
and the subject is what the turn answers (the message text, or "tool said <result>"). Its words are the
reasoning tokens, counted in the output tokens as the providers do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

DEFAULT_ARGUMENT = "query"
THINKING_TYPES = ("enabled", "adaptive")  # anthropic-sdk-python types/thinking_config_*_param.py


@dataclass(frozen=True)
class Tool:
    """A tool the request defines and the directive names."""

    name: str
    kind: str = "function"  # function | custom (Responses API custom tools take a free-form string)
    namespace: str | None = None  # a Responses `namespace` tool that groups it


def tool_list(tools) -> list:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ValueError("'tools' must be a list")
    return [tool for tool in tools if isinstance(tool, dict)]


def find_tool(api: str, tools, name: str) -> Tool | None:
    """The tool called `name` among the request's `tools`, in `api`'s format (openai, anthropic, responses)."""
    entries = tool_list(tools)
    if api == "openai":  # {"type": "function", "function": {"name": ...}}
        for tool in entries:
            function = tool.get("function")
            if (function.get("name") if isinstance(function, dict) else tool.get("name")) == name:
                return Tool(name)
        return None
    if api == "anthropic":  # {"name": ..., "input_schema": ...}; server tools carry a name too
        return Tool(name) if any(tool.get("name") == name for tool in entries) else None
    # Responses: function and custom tools at the top level, then inside `namespace` tools, which group
    # function/custom tools (openai-python types/responses/namespace_tool.py); other types have no name to call.
    for tool in entries:
        if tool.get("type") in ("function", "custom") and tool.get("name") == name:
            return Tool(name, tool["type"])
    for group in entries:
        if group.get("type") == "namespace" and isinstance(group.get("name"), str):
            for tool in tool_list(group.get("tools")):
                if tool.get("type") in ("function", "custom") and tool.get("name") == name:
                    return Tool(name, tool["type"], group["name"])
    return None


def tools_allowed(tool_choice) -> bool:
    """False when the request forbids tool calls: "none" (OpenAI chat and Responses), {"type": "none"} (Anthropic)."""
    return tool_choice != "none" and not (isinstance(tool_choice, dict) and tool_choice.get("type") == "none")


def tool_arguments(tool: Tool, opts: dict, text: str) -> str:
    """The call's arguments (a function: JSON text of an object) or input (a custom tool: any string)."""
    args = opts.get("args")
    if tool.kind == "custom":
        if args is None:
            return text
        return args if isinstance(args, str) else json.dumps(args)
    if args is None:
        return json.dumps({DEFAULT_ARGUMENT: text})
    if not isinstance(args, dict):
        raise ValueError(f"tool {tool.name!r} is a function: the directive's args must be a JSON object")
    return json.dumps(args)


def thought(label: str, subject: str) -> str:
    return f"Sandbox reasoning ({label}): {subject}"


def openai_effort(value) -> str | None:
    """The reasoning label of an OpenAI `reasoning_effort` / `reasoning.effort`; None when it asks for none."""
    if value is None or value == "none":
        return None
    if not isinstance(value, str):
        raise ValueError("'reasoning_effort' must be a string")
    return value


def anthropic_thinking(body: dict) -> tuple[str | None, bool]:
    """(reasoning label or None, whether the thinking text is shown) of an Anthropic request."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in THINKING_TYPES:
        return None, False
    label = thinking["type"]
    config = body.get("output_config")
    if isinstance(config, dict) and isinstance(config.get("effort"), str):
        label += f", effort {config['effort']}"
    # display "omitted": the block keeps its signature but its text is empty (thinking_config_*_param.py)
    return label, thinking.get("display") != "omitted"
