"""Reading an OpenAI chat request the same way for every target format.

Each function checks one part of the request and hands back plain values; the
target's module (``anthropic``, ``gemini``) shapes them into its own format.
``unsupported`` builds the target's refusal, so the message names the target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidRequest
from workers.translate.refusals import Unsupported, refuse_unknown_keys
from workers.translate.shapes import objects

# reasoning_content and thinking_blocks: the pivot's thinking on assistant turns (translate/reasoning.py);
# targets that take no thinking back ignore them.
MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content",
                          "thinking_blocks"})
ROLES = ("system", "developer", "user", "assistant", "tool")


@dataclass(frozen=True)
class Image:
    url: str | None = None  # a URL the provider fetches itself
    media_type: str | None = None  # with data: the content of a base64 data URL
    data: str | None = None


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict


@dataclass(frozen=True)
class FunctionTool:
    name: str
    description: str | None
    parameters: dict | None


def message(msg: Any, p: str, unsupported: Unsupported, target: str) -> tuple[str, Any]:
    """One message's role and content, after the checks every target makes."""
    if not isinstance(msg, dict):
        raise InvalidRequest(f"'{p}' must be an object", param=p)
    # Echoed assistant messages carry `refusal: null`, `annotations: []` etc.
    refuse_unknown_keys(msg, MESSAGE_KEYS, unsupported, equivalent=target, prefix=f"{p}.", empty=(None, [], ""))
    if msg.get("name") is not None:
        raise unsupported(f"{p}.name", f"{target} messages have no per-message name")
    role = msg.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"'{p}.role' must be one of {', '.join(ROLES)}", param=f"{p}.role")
    for key in ("tool_calls", "reasoning_content", "thinking_blocks"):
        if msg.get(key) is not None and role != "assistant":
            raise InvalidRequest(f"'{p}.{key}' is only valid on assistant messages", param=f"{p}.{key}")
    if role == "tool" and not isinstance(msg.get("tool_call_id"), str):
        raise InvalidRequest(f"'{p}.tool_call_id' must be a string", param=f"{p}.tool_call_id")
    return role, msg.get("content")


def content_parts(content: Any, param: str, unsupported: Unsupported, *, images: bool,
                  image_schemes: tuple[str, ...] = ()) -> list[str | Image]:
    """A list of content parts as text strings and images (where ``images`` allows them)."""
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or a list of content parts", param=param)
    parts: list[str | Image] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"'{p}.text' must be a string", param=f"{p}.text")
            parts.append(part["text"])
        elif kind == "image_url" and images:
            parts.append(image(part, p, unsupported, image_schemes))
        elif kind is None:
            raise InvalidRequest(f"'{p}' must be an object with a 'type'", param=f"{p}.type")
        else:
            raise unsupported(f"{p}.type", f"content part type {kind!r} cannot be sent here")
    return parts


def image(part: dict, param: str, unsupported: Unsupported, schemes: tuple[str, ...] = ()) -> Image:
    """An ``image_url`` part: a base64 data URL, or an http(s) URL (or one of ``schemes``).
    Its ``detail`` is only a resolution hint, which the targets decide themselves."""
    image_url = part.get("image_url")
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    url_param = f"{param}.image_url.url"
    if not isinstance(url, str):
        raise InvalidRequest(f"'{url_param}' must be a string", param=url_param)
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type or not data:
            raise InvalidRequest(f"'{url_param}' must be a data:<media>;base64,<data> URL", param=url_param)
        return Image(media_type=media_type, data=data)
    if url.startswith(("http://", "https://", *schemes)):
        return Image(url=url)
    allowed = ", ".join(["http(s)", *schemes])
    raise unsupported(url_param, f"images must be {allowed} or base64 data URLs")


def tool_calls(calls: Any, param: str, unsupported: Unsupported) -> list[ToolCall]:
    """An assistant message's ``tool_calls``, with their arguments decoded."""
    if not isinstance(calls, list):
        raise InvalidRequest(f"'{param}' must be a list", param=param)
    out = []
    for k, call in enumerate(calls):
        p = f"{param}[{k}]"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise InvalidRequest(f"'{p}.function' must be an object", param=f"{p}.function")
        if call.get("type", "function") != "function":
            raise unsupported(f"{p}.type", "only function tool calls")
        fn = call["function"]
        if not isinstance(call.get("id"), str) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"'{p}' needs a string 'id' and 'function.name'", param=p)
        try:
            arguments = json.loads(fn.get("arguments"))
        except (TypeError, ValueError):
            arguments = None
        if not isinstance(arguments, dict):
            raise InvalidRequest(f"'{p}.function.arguments' must be a JSON object encoded as a string",
                                 param=f"{p}.function.arguments")
        out.append(ToolCall(call["id"], fn["name"], arguments))
    return out


def function_tools(tools: Any, unsupported: Unsupported) -> list[FunctionTool]:
    """The request's ``tools``: function definitions only."""
    out = []
    for p, tool in objects(tools, "tools"):
        if tool.get("type") != "function":
            raise unsupported(f"{p}.type", "only function tools")
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"'{p}.function.name' must be a string", param=f"{p}.function.name")
        if fn.get("strict"):
            raise unsupported(f"{p}.function.strict", "strict schema adherence is OpenAI-only")
        out.append(FunctionTool(fn["name"], fn.get("description"), fn.get("parameters")))
    return out


def max_tokens(body: dict) -> int | None:
    """The answer's token cap, ``max_tokens`` or its newer name ``max_completion_tokens`` (both
    may be sent if they agree); None when neither is."""
    a, b = body.get("max_tokens"), body.get("max_completion_tokens")
    if a is not None and b is not None and a != b:
        raise InvalidRequest("'max_tokens' and 'max_completion_tokens' disagree; send one",
                             param="max_completion_tokens")
    param, value = ("max_tokens", a) if a is not None else ("max_completion_tokens", b)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidRequest(f"'{param}' must be a positive integer", param=param)
    return value


def stop_sequences(body: dict) -> list[str] | None:
    """``stop`` as a list of sequences (one string is one sequence); None when it is not sent."""
    stop = body.get("stop")
    if stop is None:
        return None
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidRequest("'stop' must be a string or a list of strings", param="stop")
    return stops


class ToolResults:
    """Tool messages in a row become one user turn of results: Anthropic and Gemini both want
    every result of one assistant turn in a single user turn. ``add`` puts a result in the
    turn ``is_open`` (opening one after any other message); ``close`` ends it, at any other
    message."""

    def __init__(self, turns: list[dict], field: str):
        self.turns = turns  # the target's conversation
        self.field = field  # the turn's list of parts: "content" (Anthropic), "parts" (Gemini)
        self.is_open = False  # turns[-1] is a user turn of tool results

    def add(self, result: dict) -> None:
        if self.is_open:
            self.turns[-1][self.field].append(result)
        else:
            self.turns.append({"role": "user", self.field: [result]})
            self.is_open = True

    def close(self) -> None:
        self.is_open = False
