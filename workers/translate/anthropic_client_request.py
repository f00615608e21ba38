"""Anthropic Messages request -> the chat pivot (OpenAI chat), for models that do not speak
Anthropic's format: OpenAI and generic models, and Vertex through the pivot (pure functions).

The mirror of ``anthropic.py``'s request direction. What the target cannot honour is
refused with ``UnsupportedParameter`` naming the field, unless the model's ``drop_params``
lists it (``translate_messages_request``'s ``drop``: removed, and named in the result's
``dropped``). Hints with no equivalent that change nothing about the answer are ignored
(``cache_control``, ``thinking.display``, ``$schema``, ``context_management``'s
``clear_thinking`` edits); README.md ("Anthropic clients on other models") has the table.
The answer goes back through ``anthropic_client_response`` (whole) or
``anthropic_client_stream`` (streamed).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidRequest
from workers.translate.anthropic_client_reasoning import context_management, reasoning_effort
from workers.translate.drop_params import Dropped, without_dropped
from workers.translate.refusals import refuse_unknown_keys, unsupported_for
from workers.translate.shapes import objects

# Top-level keys handled below. Everything else (container, mcp_servers, service_tier, top_k, ...)
# is refused unless its value is None.
_HANDLED_KEYS = frozenset(
    {"model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences", "metadata",
     "tools", "tool_choice", "stream", "thinking", "output_config", "context_management"}
)
# output_config on a message: the per-turn-control beta (Claude Code sends it on its system message).
_MESSAGE_KEYS = frozenset({"role", "content", "output_config"})
# defer_loading (tool search) and $schema are handled in _convert_tools; cache_control is a caching hint.
_TOOL_KEYS = frozenset({"type", "name", "description", "input_schema", "cache_control", "defer_loading", "strict"})

_unsupported = unsupported_for("OpenAI-format models")


def _check_keys(body: dict) -> None:
    for key, value in body.items():
        if key in _HANDLED_KEYS or value is None:
            continue
        raise _unsupported(key, "no OpenAI chat equivalent")


def _text(block: dict, param: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"'{param}.text' must be a string", param=f"{param}.text")
    return text  # `cache_control` and `citations` are hints/annotations with no OpenAI field


def _blocks(content: Any, param: str) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or a list of content blocks", param=param)
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"'{param}[{j}]' must be an object with a 'type'", param=f"{param}[{j}].type")
    return content


def _image_part(block: dict, param: str) -> dict:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str) or not media_type or not data:
            raise InvalidRequest(f"'{param}.source' needs string 'media_type' and 'data'", param=f"{param}.source")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = source.get("url")
        if not isinstance(url, str):
            raise InvalidRequest(f"'{param}.source.url' must be a string", param=f"{param}.source.url")
    elif kind is None:
        raise InvalidRequest(f"'{param}.source' must be an object with a 'type'", param=f"{param}.source")
    else:
        raise _unsupported(f"{param}.source.type", f"image source {kind!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _content(parts: list[dict]) -> str | list[dict]:
    """A single text part reads best as a plain string, as most clients send it."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _tool_message(block: dict, param: str) -> dict:
    tool_id = block.get("tool_use_id")
    if not isinstance(tool_id, str):
        raise InvalidRequest(f"'{param}.tool_use_id' must be a string", param=f"{param}.tool_use_id")
    content = block.get("content")
    if content is None:
        text = ""
    else:
        texts = []
        for k, part in enumerate(_blocks(content, f"{param}.content")):
            if part["type"] != "text":
                # OpenAI tool messages carry text only.
                raise _unsupported(f"{param}.content[{k}].type", f"tool result block type {part['type']!r}")
            texts.append(_text(part, f"{param}.content[{k}]"))
        text = "\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": tool_id, "content": text}


def _tool_call(block: dict, param: str) -> dict:
    tool_id, name, args = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(tool_id, str) or not isinstance(name, str):
        raise InvalidRequest(f"'{param}' needs a string 'id' and 'name'", param=param)
    if not isinstance(args, dict):
        raise InvalidRequest(f"'{param}.input' must be an object", param=f"{param}.input")
    return {"id": tool_id, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


def _convert_message(msg: Any, p: str) -> list[dict]:
    """One Anthropic turn -> OpenAI messages (tool results first, as OpenAI wants them)."""
    if not isinstance(msg, dict):
        raise InvalidRequest(f"'{p}' must be an object", param=p)
    refuse_unknown_keys(msg, _MESSAGE_KEYS, _unsupported, equivalent="OpenAI", prefix=f"{p}.")
    role = msg.get("role")
    if role == "system":
        # A system message inside the conversation (Anthropic: generally available on current models;
        # Claude Code sends one): OpenAI takes system messages anywhere, so it stays where it is.
        text = _system_text(msg.get("content"), f"{p}.content")
        return [{"role": "system", "content": text}] if text else []
    if role not in ("user", "assistant"):
        raise InvalidRequest(f"'{p}.role' must be user, assistant or system", param=f"{p}.role")
    parts: list[dict] = []
    tool_messages: list[dict] = []
    tool_calls: list[dict] = []
    for j, block in enumerate(_blocks(msg.get("content"), f"{p}.content")):
        q, kind = f"{p}.content[{j}]", block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, q)})
        elif kind == "image" and role == "user":
            parts.append(_image_part(block, q))
        elif kind == "tool_result" and role == "user":
            tool_messages.append(_tool_message(block, q))
        elif kind == "tool_use" and role == "assistant":
            tool_calls.append(_tool_call(block, q))
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            # The model's earlier thinking: OpenAI chat takes none back, and a reasoning model's own
            # is not carried between turns either. Left out, as Anthropic's clear_thinking edit would.
            continue
        elif kind in ("image", "tool_result", "tool_use"):
            raise InvalidRequest(f"'{q}' of type {kind!r} is not valid in a {role} message", param=f"{q}.type")
        else:
            raise _unsupported(f"{q}.type", f"content block type {kind!r}")
    if role == "assistant":
        # OpenAI assistant messages carry text only; empty text next to tool calls is noise.
        parts = [part for part in parts if part["text"]] if tool_calls else parts
        out: dict[str, Any] = {"role": "assistant", "content": _content(parts) if parts else None}
        if tool_calls:
            out["tool_calls"] = tool_calls
        elif not parts:
            raise InvalidRequest(f"'{p}.content' must not be empty", param=f"{p}.content")
        return [out]
    if not parts and not tool_messages:
        raise InvalidRequest(f"'{p}.content' must not be empty", param=f"{p}.content")
    return tool_messages + ([{"role": "user", "content": _content(parts)}] if parts else [])


def _convert_messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list", param="messages")
    out: list[dict] = []
    for i, msg in enumerate(messages):
        out.extend(_convert_message(msg, f"messages[{i}]"))
    turns = [i for i, msg in enumerate(messages) if msg.get("role") != "system"]
    if not turns:
        raise InvalidRequest("'messages' needs at least one user or assistant message", param="messages")
    if messages[turns[-1]].get("role") == "assistant":
        # Anthropic continues a final assistant turn; an OpenAI model would answer after it instead.
        raise _unsupported(f"messages[{turns[-1]}].role", "a final assistant message (prefill) cannot be continued")
    return out


def _system_text(system: Any, param: str = "system") -> str:
    if isinstance(system, str):
        return system
    texts = []
    for j, block in enumerate(_blocks(system, param)):
        if block["type"] != "text":
            raise _unsupported(f"{param}[{j}].type", "system blocks must be text")
        texts.append(_text(block, f"{param}[{j}]"))
    # Hoisting several system blocks into one string is what the reverse direction does too.
    return "\n\n".join(texts)


def _convert_tools(tools: Any) -> list[dict]:
    out = []
    for p, tool in objects(tools, "tools"):
        if tool.get("type", "custom") not in ("custom", None):
            raise _unsupported(f"{p}.type", f"Anthropic server tool {tool['type']!r}; list "
                                            f"'tools.{tool['type']}' in the model's drop_params to drop it")
        refuse_unknown_keys(tool, _TOOL_KEYS, _unsupported, equivalent="OpenAI", prefix=f"{p}.")
        if not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"'{p}.name' must be a string", param=f"{p}.name")
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise InvalidRequest(f"'{p}.input_schema' must be an object", param=f"{p}.input_schema")
        if tool.get("defer_loading") is True:
            # Tool search: Anthropic keeps a deferred tool out of the model's context until a search
            # finds it. The target has no tool search, so it stays out.
            continue
        fn: dict[str, Any] = {"name": tool["name"]}
        if tool.get("description") is not None:
            fn["description"] = tool["description"]
        # "$schema" only names the JSON Schema dialect; Gemini refuses keys it does not know.
        fn["parameters"] = {k: v for k, v in schema.items() if k != "$schema"}
        if tool.get("strict") is True:
            fn["strict"] = True
        out.append({"type": "function", "function": fn})
    return out


def _convert_tool_choice(choice: Any, out: dict) -> None:
    if not isinstance(choice, dict):
        raise InvalidRequest("'tool_choice' must be an object", param="tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise InvalidRequest("'tool_choice.name' must be a string", param="tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in ("auto", "any", "none"):
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise _unsupported("tool_choice.type", f"tool_choice type {kind!r}")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False


def _number(body: dict, key: str) -> float | None:
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidRequest(f"'{key}' must be a number", param=key)
    return value


@dataclass
class ChatTranslation:
    body: dict  # the chat pivot request (without `stream`)
    dropped: list[str] = field(default_factory=list)  # what drop_params removed, as the operator named it


def translate_messages_request(body: dict, *, upstream_model: str, reasoning: bool = False,
                               drop: Collection[str] = ()) -> ChatTranslation:
    """Anthropic Messages request body -> the chat pivot, dropping what ``drop`` lists.

    ``reasoning``: the target takes the pivot's ``reasoning_effort`` (the model's ``reasoning``
    control is not ``none``); thinking and effort then become it, and ``max_tokens`` goes as
    ``max_completion_tokens``, which OpenAI's reasoning models require.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    body, dropped = without_dropped(body, drop)
    out = _translate(body, upstream_model, reasoning=reasoning, drop=drop, dropped=dropped)
    return ChatTranslation(out, dropped.paths)


def messages_request_to_chat(body: dict, *, upstream_model: str, reasoning: bool = False) -> dict:
    """Anthropic Messages request body -> OpenAI chat request body (without `stream`), dropping nothing."""
    return translate_messages_request(body, upstream_model=upstream_model, reasoning=reasoning).body


def _translate(body: dict, upstream_model: str, *, reasoning: bool, drop: Collection[str],
               dropped: Dropped) -> dict:
    _check_keys(body)
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("'max_tokens' is required and must be a positive integer", param="max_tokens")
    messages = _convert_messages(body.get("messages"))
    system = _system_text(body["system"]) if body.get("system") is not None else ""
    if system:
        messages.insert(0, {"role": "system", "content": system})
    out: dict[str, Any] = {"model": upstream_model, "messages": messages}
    out["max_completion_tokens" if reasoning else "max_tokens"] = max_tokens
    reasoning_effort(body, reasoning=reasoning, drop=drop, dropped=dropped, out=out)
    if body.get("context_management") is not None:
        context_management(body["context_management"])
    for key in ("temperature", "top_p"):
        if _number(body, key) is not None:
            out[key] = body[key]
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest("'stop_sequences' must be a list of strings", param="stop_sequences")
        if stops:
            out["stop"] = stops
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidRequest("'metadata' must be an object", param="metadata")
        for key, value in metadata.items():
            if key != "user_id" and value is not None:
                raise _unsupported(f"metadata.{key}", "only metadata.user_id")
        user = metadata.get("user_id")
        if user is not None:
            if not isinstance(user, str):
                raise InvalidRequest("'metadata.user_id' must be a string", param="metadata.user_id")
            out["user"] = user
    tools = _convert_tools(body["tools"]) if body.get("tools") is not None else []
    if tools:
        out["tools"] = tools
    if body.get("tool_choice") is not None:
        _convert_tool_choice(body["tool_choice"], out)
    return out
