"""OpenAI Responses API request -> the chat pivot, for models that do not speak /v1/responses (pure).

The formats are OpenAI's (openai-python types/responses/response_create_params.py,
response_input_item_param.py, tool_param.py) and what Codex sends
(codex-rs codex-api/src/common.rs ``ResponsesApiRequest``: model, instructions,
input, tools, tool_choice, parallel_tool_calls, reasoning, store, stream, include,
service_tier, prompt_cache_key, text, client_metadata). Item types pass through
as the client sent them and come back as the client expects them (peers broke
Codex by rewriting them): see ``responses_items``.

What the pivot cannot carry is refused with 400 naming the field, unless the
model's ``drop_params`` lists it (``drop``), in which case it is dropped and named
in ``ChatRequest.dropped``. Hints that change nothing about the answer are
ignored (``IGNORED_HINTS``). ``background``, ``conversation`` and ``prompt`` are
always refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import GatewayError, InvalidRequest
from workers.translate import reasoning
from workers.translate.refusals import unsupported_for
from workers.translate.responses_items import ToolNames, unseal

# Hints with no equivalent once translated: accepted and ignored (README lists them).
IGNORED_HINTS = (
    "include", "prompt_cache_key", "prompt_cache_retention", "prompt_cache_options", "safety_identifier",
    "service_tier", "truncation", "metadata", "client_metadata", "stream_options", "max_tool_calls",
    "text.verbosity", "reasoning.summary", "reasoning.generate_summary", "reasoning.context",
)
# Taken by the endpoint (streaming, stored responses), not by the translation.
ENDPOINT_FIELDS = ("model", "stream", "store", "previous_response_id")
# State the gateway does not keep: always refused, whatever drop_params says.
REFUSED_FIELDS = ("background", "conversation", "prompt")
# Tool types that run on OpenAI's side, which no other model can run (openai-python types/responses/tool.py).
BUILTIN_TOOL_TYPES = (
    "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11", "file_search",
    "computer", "computer_use", "computer_use_preview", "code_interpreter", "image_generation", "local_shell",
    "shell", "apply_patch", "mcp", "tool_search", "programmatic_tool_calling",
)
# Input items that record a built-in tool's use: dropped with their tool, refused otherwise.
_BUILTIN_ITEMS = {
    "web_search_call": ("web_search", "web_search_preview"), "file_search_call": ("file_search",),
    "computer_call": ("computer_use_preview", "computer"), "computer_call_output": ("computer_use_preview", "computer"),
    "code_interpreter_call": ("code_interpreter",), "image_generation_call": ("image_generation",),
    "local_shell_call": ("local_shell",), "local_shell_call_output": ("local_shell",),
    "shell_call": ("shell",), "shell_call_output": ("shell",),
    "apply_patch_call": ("apply_patch",), "apply_patch_call_output": ("apply_patch",),
    "mcp_call": ("mcp",), "mcp_list_tools": ("mcp",), "mcp_approval_request": ("mcp",),
    "mcp_approval_response": ("mcp",), "tool_search_call": ("tool_search",), "tool_search_output": ("tool_search",),
}

_HANDLED = frozenset({"input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
                      "temperature", "top_p", "user", "reasoning", "text", "top_logprobs"})
_TOP_LEVEL_HINTS = frozenset(h for h in IGNORED_HINTS if "." not in h)
_REASONING_KEYS = frozenset({"effort", "summary", "generate_summary", "context"})
_TEXT_KEYS = frozenset({"format", "verbosity"})
_FUNCTION_KEYS = frozenset({"type", "name", "description", "parameters", "strict", "defer_loading",
                            "allowed_callers", "output_schema"})
_CUSTOM_KEYS = frozenset({"type", "name", "description", "format", "defer_loading", "allowed_callers"})
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
# The one string argument a custom (freeform) tool becomes: {"input": "<the raw text>"}.
CUSTOM_ARGUMENT = "input"

# An input item holding tools (Codex sends its tools so to "responses-lite" models).
ADDITIONAL_TOOLS = "additional_tools"

# Pivot parameters whose Responses name differs (for refusals raised by the target's translator).
_TOP_LEVEL_NAMES = {"messages": "input", "max_tokens": "max_output_tokens",
                    "max_completion_tokens": "max_output_tokens", "reasoning_effort": "reasoning.effort",
                    "response_format": "text.format"}


@dataclass
class ChatRequest:
    """A Responses request in the chat pivot, with what the answer's translation needs."""

    body: dict  # the chat request (without `stream`)
    tools: ToolNames  # chat function names -> the Responses tools they stand for
    dropped: list[str] = field(default_factory=list)  # what drop_params dropped, as the caller named it
    echo: dict = field(default_factory=dict)  # request fields the Response object repeats
    _params: dict[str, str] = field(default_factory=dict)  # pivot path prefix -> Responses path

    def client_param(self, param: str) -> str:
        """A pivot parameter path (as the target's translator names it) as the caller named it."""
        match = re.match(r"^(messages\[\d+\](?:\.tool_calls\[\d+\])?|tools\[\d+\])(.*)$", param)
        if match and match.group(1) in self._params:
            rest = match.group(2)
            rest = rest.replace(".function.", ".", 1) if rest.startswith(".function.") else rest
            return self._params[match.group(1)] + rest
        head, dot, rest = param.partition(".")
        return _TOP_LEVEL_NAMES.get(head, head) + dot + rest if head in _TOP_LEVEL_NAMES else param

    def client_error(self, error: GatewayError) -> GatewayError:
        """A refusal from the target's translator, renamed to the caller's fields."""
        if error.param:
            renamed = self.client_param(error.param)
            error.message = error.message.replace(f"'{error.param}'", f"'{renamed}'")
            error.param = renamed
        return error


def input_items(body: dict) -> list[dict]:
    """The request's ``input`` as a list of items (a string is one user message), e.g. to store them."""
    value = body.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or a list of items", param="input")
    return value


class _Translation:
    def __init__(self, body: dict, drop: Collection[str], target: str, parallel_tool_calls: bool):
        self.unsupported = unsupported_for(target)
        self.drop = frozenset(drop)
        self.parallel_tool_calls = parallel_tool_calls
        self.tools = ToolNames()
        self.dropped: list[str] = []
        self.params: dict[str, str] = {}
        self.body = self._without_dropped(body)

    # -- drop_params ------------------------------------------------------------------------------
    def droppable(self, path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:n]) in self.drop for n in range(1, len(parts) + 1))

    def note_dropped(self, path: str) -> None:
        if path not in self.dropped:
            self.dropped.append(path)

    def _without_dropped(self, body: dict) -> dict:
        """The body without the fields drop_params names (tools.<type> is applied to each tool)."""
        body = dict(body)
        for path in sorted(self.drop):
            head, *rest = path.split(".")
            if head in ("tools", *REFUSED_FIELDS, *ENDPOINT_FIELDS, "input") or body.get(head) is None:
                continue
            if not rest:
                del body[head]
                self.note_dropped(path)
                continue
            node = body[head] = dict(body[head]) if isinstance(body[head], dict) else body[head]
            for key in rest[:-1]:
                if not isinstance(node, dict) or not isinstance(node.get(key), dict):
                    node = None
                    break
                node[key] = dict(node[key])
                node = node[key]
            if isinstance(node, dict) and node.get(rest[-1]) is not None:
                del node[rest[-1]]
                self.note_dropped(path)
        return body

    # -- top level --------------------------------------------------------------------------------
    def check_keys(self) -> None:
        body = self.body
        for key in REFUSED_FIELDS:
            if body.get(key) not in (None, False):
                raise self.unsupported(key, "the gateway keeps no background jobs, conversations or prompt "
                                            "templates for translated models")
        known = _HANDLED | _TOP_LEVEL_HINTS | set(ENDPOINT_FIELDS) | set(REFUSED_FIELDS)
        for key, value in body.items():
            if key not in known and value is not None:
                raise self.unsupported(key, "no equivalent once translated")
        for name, allowed in (("reasoning", _REASONING_KEYS), ("text", _TEXT_KEYS)):
            value = body.get(name)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise InvalidRequest(f"'{name}' must be an object", param=name)
            for key, sub in value.items():
                if key not in allowed and sub is not None:
                    raise self.unsupported(f"{name}.{key}", "no equivalent once translated")

    def translate(self, history: Sequence[dict], upstream_model: str) -> dict:
        self.check_keys()
        body = self.body
        out: dict[str, Any] = {"model": upstream_model}
        tools = self.convert_tools(body.get("tools"))
        for i, item in enumerate(input_items(body)):
            # Codex's "responses-lite" models get their tools in an input item (TRAFFIC.md, the
            # additional_tools item): they are the request's tools like the others.
            if isinstance(item, dict) and item.get("type") == ADDITIONAL_TOOLS:
                tools += self.convert_tools(item.get("tools"), f"input[{i}].tools", first=len(tools))
        out["messages"] = self.convert_input(body, history)
        if tools:
            out["tools"] = tools
        self.convert_tool_choice(body.get("tool_choice"), out)
        if body.get("parallel_tool_calls") is False and tools and self.parallel_tool_calls:
            out["parallel_tool_calls"] = False
        max_output = body.get("max_output_tokens")
        if max_output is not None:
            if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
                raise InvalidRequest("'max_output_tokens' must be a positive integer", param="max_output_tokens")
            out["max_tokens"] = max_output
        for key in ("temperature", "top_p"):
            value = body.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidRequest(f"'{key}' must be a number", param=key)
                out[key] = value
        if body.get("user") is not None:
            if not isinstance(body["user"], str):
                raise InvalidRequest("'user' must be a string", param="user")
            out["user"] = body["user"]
        if body.get("top_logprobs") not in (None, 0):
            raise self.unsupported("top_logprobs", "log probabilities are not translated")
        effort = reasoning.effort((body.get("reasoning") or {}).get("effort"), "reasoning.effort")
        if effort is not None:
            out["reasoning_effort"] = effort
        fmt = self.response_format((body.get("text") or {}).get("format"))
        if fmt is not None:
            out["response_format"] = fmt
        return out

    # -- tools ------------------------------------------------------------------------------------
    def convert_tools(self, tools: Any, param: str = "tools", first: int = 0) -> list[dict]:
        """``tools`` (the request's, at ``param``) as chat functions, numbered from ``first`` in the chat request."""
        if tools is None:
            return []
        if not isinstance(tools, list):
            raise InvalidRequest(f"'{param}' must be a list", param=param)
        out: list[dict] = []
        for i, tool in enumerate(tools):
            p = f"{param}[{i}]"
            kind = tool.get("type") if isinstance(tool, dict) else None
            if not isinstance(kind, str):
                raise InvalidRequest(f"'{p}' must be an object with a 'type'", param=f"{p}.type")
            if kind in ("function", "custom"):
                self.params[f"tools[{first + len(out)}]"] = p
                out.append(self.function(tool, p, None))
            elif kind == "namespace":
                out.extend(self.namespace(tool, p, first + len(out)))
            elif self.droppable(f"tools.{kind}"):
                self.note_dropped(f"tools.{kind}")
            else:
                why = "a built-in tool only OpenAI runs" if kind in BUILTIN_TOOL_TYPES else f"tool type {kind!r}"
                raise self.unsupported(f"{p}.type", f"{why}; the operator can list 'tools.{kind}' in "
                                                    "the model's drop_params to drop it")
        return out

    def namespace(self, tool: dict, p: str, first: int) -> list[dict]:
        name, members = tool.get("name"), tool.get("tools")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"'{p}.name' must be a string", param=f"{p}.name")
        if not isinstance(members, list):
            raise InvalidRequest(f"'{p}.tools' must be a list", param=f"{p}.tools")
        out = []
        for j, member in enumerate(members):
            q = f"{p}.tools[{j}]"
            if not isinstance(member, dict) or member.get("type") not in ("function", "custom"):
                raise self.unsupported(f"{q}.type", "a namespace groups function and custom tools only")
            self.params[f"tools[{first + len(out)}]"] = q
            out.append(self.function(member, q, name))
        return out

    def function(self, tool: dict, p: str, namespace: str | None) -> dict:
        kind = tool["type"]
        for key, value in tool.items():
            if key not in (_FUNCTION_KEYS if kind == "function" else _CUSTOM_KEYS) and value not in (None, False):
                raise self.unsupported(f"{p}.{key}", "no equivalent once translated")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"'{p}.name' must be a string", param=f"{p}.name")
        description = tool.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequest(f"'{p}.description' must be a string", param=f"{p}.description")
        fn: dict[str, Any] = {"name": self.tools.chat_name(name, namespace, kind)}
        if kind == "custom":
            fn["description"] = (description or "") + _format_note(tool.get("format"), f"{p}.format")
            fn["parameters"] = {"type": "object", "additionalProperties": False, "required": [CUSTOM_ARGUMENT],
                                "properties": {CUSTOM_ARGUMENT: {"type": "string",
                                                                 "description": "The tool's raw input text."}}}
            return {"type": "function", "function": fn}
        if description is not None:
            fn["description"] = description
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(f"'{p}.parameters' must be an object", param=f"{p}.parameters")
        fn["parameters"] = parameters or {"type": "object", "properties": {}}
        if tool.get("strict"):
            fn["strict"] = True
        return {"type": "function", "function": fn}

    def convert_tool_choice(self, choice: Any, out: dict) -> None:
        if choice is None:
            return
        if choice in ("auto", "none", "required"):
            if out.get("tools"):
                out["tool_choice"] = choice
            elif choice == "required":
                raise self.unsupported("tool_choice", "'required' but no tool this model can call remains")
            return
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind in ("function", "custom") and isinstance(choice.get("name"), str):
            chat_name = next((n for n, t in self.tools.by_chat_name.items()
                              if t.name == choice["name"] and t.namespace is None and t.kind == kind), None)
            if chat_name is None:
                raise InvalidRequest(f"'tool_choice.name' {choice['name']!r} names no {kind} tool in 'tools'",
                                     param="tool_choice.name")
            out["tool_choice"] = {"type": "function", "function": {"name": chat_name}}
        elif self.droppable("tool_choice"):
            self.note_dropped("tool_choice")
        else:
            raise self.unsupported("tool_choice", f"tool_choice {kind or choice!r}")

    def response_format(self, fmt: Any) -> dict | None:
        if fmt is None:
            return None
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "text":
            return None
        if kind == "json_object":
            return {"type": "json_object"}
        if kind == "json_schema":
            if not isinstance(fmt.get("schema"), dict):
                raise InvalidRequest("'text.format.schema' must be an object", param="text.format.schema")
            schema = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
            if fmt.get("strict") is not None:
                schema["strict"] = fmt["strict"]
            if fmt.get("description") is not None:
                schema["description"] = fmt["description"]
            return {"type": "json_schema", "json_schema": schema}
        raise InvalidRequest("'text.format.type' must be text, json_object or json_schema", param="text.format.type")

    # -- input ------------------------------------------------------------------------------------
    def convert_input(self, body: dict, history: Sequence[dict]) -> list[dict]:
        messages = _Messages(self)
        instructions = body.get("instructions")
        if instructions is not None:
            if not isinstance(instructions, str):
                raise InvalidRequest("'instructions' must be a string", param="instructions")
            if instructions:
                messages.add({"role": "system", "content": instructions}, "instructions")
        for item in history:
            messages.item(item, "previous_response_id")
        for i, item in enumerate(input_items(body)):
            messages.item(item, f"input[{i}]")
        return messages.finish()


class _Messages:
    """Input items -> chat messages: a run of assistant-side items (reasoning, assistant text,
    tool calls) is one assistant turn; images in tool outputs follow the run of tool results as a
    user turn (chat tool messages carry text only, and Anthropic wants tool results first)."""

    def __init__(self, translation: _Translation):
        self.t = translation
        self.out: list[dict] = []
        self.assistant: dict | None = None
        self.images: list[dict] = []

    def add(self, message: dict, param: str) -> None:
        self.t.params[f"messages[{len(self.out)}]"] = param
        self.out.append(message)

    def close_assistant(self) -> None:
        if self.assistant is not None:
            message, self.assistant = self.assistant, None
            texts = message.pop("_texts")
            if len(texts) == 1:
                message["content"] = texts[0]
            elif texts:
                message["content"] = [{"type": "text", "text": text} for text in texts]
            if not message.get("thinking_blocks"):
                message.pop("thinking_blocks", None)
                message.pop("reasoning_content", None)
            if texts or message.get("tool_calls") or message.get("thinking_blocks"):
                self.out.append(message)  # an empty assistant message says nothing: left out

    def close_tool_run(self) -> None:
        if self.images:
            images, self.images = self.images, []
            self.out.append({"role": "user", "content": images})

    def assistant_turn(self, param: str) -> dict:
        self.close_tool_run()
        if self.assistant is None:
            self.t.params[f"messages[{len(self.out)}]"] = param
            self.assistant = {"role": "assistant", "content": None, "_texts": [], "thinking_blocks": [],
                              "reasoning_content": ""}
        return self.assistant

    def item(self, item: Any, p: str) -> None:
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{p}' must be an object", param=p)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            self.message(item, p)
        elif kind == "reasoning":
            blocks = unseal(item.get("encrypted_content"))
            # Reasoning another model produced cannot be replayed here; OpenAI itself removes reasoning
            # items across models (openai-python types/responses/response.py, input_transformations,
            # reason "model_mismatch").
            if blocks:
                turn = self.assistant_turn(p)
                turn["thinking_blocks"].extend(blocks)
                turn["reasoning_content"] += "".join(b.get("thinking", "") for b in blocks)
        elif kind in ("function_call", "custom_tool_call"):
            self.tool_call(item, kind, p)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self.tool_output(item, p)
        elif kind == ADDITIONAL_TOOLS:
            return  # tools, taken with the request's own (_Translation.translate)
        elif kind in _BUILTIN_ITEMS and any(self.t.droppable(f"tools.{t}") for t in _BUILTIN_ITEMS[kind]):
            self.t.note_dropped(f"input.{kind}")
        else:
            why = "a built-in tool's item" if kind in _BUILTIN_ITEMS else f"input item type {kind!r}"
            raise self.t.unsupported(f"{p}.type", why)

    def message(self, item: dict, p: str) -> None:
        role = _ROLES.get(item["role"]) if isinstance(item.get("role"), str) else None
        if role is None:
            raise InvalidRequest(f"'{p}.role' must be one of user, assistant, system, developer", param=f"{p}.role")
        content = item.get("content")
        if role == "assistant":
            turn = self.assistant_turn(p)
            turn["_texts"].extend(_assistant_texts(content, f"{p}.content"))
            return
        self.close_assistant()
        self.close_tool_run()
        parts = _input_parts(content, f"{p}.content", self.t, images=role == "user")
        self.add({"role": role, "content": _flat(parts)}, p)

    def tool_call(self, item: dict, kind: str, p: str) -> None:
        call_id, name = item.get("call_id"), item.get("name")
        if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
            raise InvalidRequest(f"'{p}' needs a string 'call_id' and 'name'", param=p)
        namespace = item.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise InvalidRequest(f"'{p}.namespace' must be a string", param=f"{p}.namespace")
        if kind == "function_call":
            arguments = item.get("arguments")
            if not isinstance(arguments, str):
                raise InvalidRequest(f"'{p}.arguments' must be a string", param=f"{p}.arguments")
        else:
            if not isinstance(item.get("input"), str):
                raise InvalidRequest(f"'{p}.input' must be a string", param=f"{p}.input")
            arguments = json.dumps({CUSTOM_ARGUMENT: item["input"]}, ensure_ascii=False)
        turn = self.assistant_turn(p)
        calls = turn.setdefault("tool_calls", [])
        self.t.params[f"messages[{len(self.out)}].tool_calls[{len(calls)}]"] = p
        chat_name = self.t.tools.chat_name(name, namespace, "custom" if kind == "custom_tool_call" else "function")
        calls.append({"id": call_id, "type": "function", "function": {"name": chat_name, "arguments": arguments}})

    def tool_output(self, item: dict, p: str) -> None:
        call_id = item.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise InvalidRequest(f"'{p}.call_id' must be a string", param=f"{p}.call_id")
        self.close_assistant()
        output = item.get("output")
        if isinstance(output, str):
            text = output
        else:
            parts = _input_parts(output, f"{p}.output", self.t, images=True)
            text = "\n".join(part["text"] for part in parts if part["type"] == "text")
            self.images.extend(part for part in parts if part["type"] != "text")
        self.add({"role": "tool", "tool_call_id": call_id, "content": text}, p)

    def finish(self) -> list[dict]:
        self.close_assistant()
        self.close_tool_run()
        if not any(m["role"] in ("user", "assistant", "tool") for m in self.out):
            raise InvalidRequest("'input' needs at least one message", param="input")
        return self.out


def _assistant_texts(content: Any, param: str) -> list[str]:
    """An assistant message's text (output_text parts; a refusal is text the model said)."""
    if isinstance(content, str):
        return [content] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or a list of content parts", param=param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        key = {"output_text": "text", "input_text": "text", "text": "text", "refusal": "refusal"}.get(kind)
        if key is None:
            raise InvalidRequest(f"'{param}[{j}].type' must be output_text or refusal", param=f"{param}[{j}].type")
        if not isinstance(part.get(key), str):
            raise InvalidRequest(f"'{param}[{j}].{key}' must be a string", param=f"{param}[{j}].{key}")
        if part[key]:
            texts.append(part[key])
    return texts


def _input_parts(content: Any, param: str, t: _Translation, *, images: bool) -> list[dict]:
    """User, system or tool-output content -> chat content parts (text, and images where allowed)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{param}' must be a string or a list of content parts", param=param)
    parts: list[dict] = []
    for j, part in enumerate(content):
        q = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"'{q}.text' must be a string", param=f"{q}.text")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and images:
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                # file_id names a file in OpenAI's file store, which no other provider can read.
                raise t.unsupported(f"{q}.image_url" if part.get("file_id") is None else f"{q}.file_id",
                                    "images must be given as image_url (a URL or a data URL)")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind is None:
            raise InvalidRequest(f"'{q}' must be an object with a 'type'", param=f"{q}.type")
        else:
            raise t.unsupported(f"{q}.type", f"content part type {kind!r} cannot be sent here")
    return parts


def _flat(parts: list[dict]) -> str | list[dict]:
    """A lone text part reads best as a plain string, as most clients send it."""
    return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts


def _format_note(fmt: Any, param: str) -> str:
    """A custom tool's input format, told to the model in words (a function has no grammar)."""
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return ""
    if not isinstance(fmt, dict) or fmt.get("type") != "grammar" or not isinstance(fmt.get("definition"), str):
        raise InvalidRequest(f"'{param}' must be a text or grammar format", param=param)
    syntax = fmt.get("syntax") or "grammar"
    return (f"\n\nPass the raw input as the '{CUSTOM_ARGUMENT}' string. It must follow this {syntax} grammar:\n"
            f"```{syntax}\n{fmt['definition']}\n```")


def responses_request_to_chat(body: dict, *, upstream_model: str, drop: Collection[str] = frozenset(),
                              history: Sequence[dict] = (), parallel_tool_calls: bool = True,
                              target: str = "models without a Responses API") -> ChatRequest:
    """A Responses API request body -> the chat pivot request (without `stream`).

    ``drop``: the model's drop_params (field names, dotted paths, ``tools.<type>``).
    ``history``: the items of the stored response ``previous_response_id`` continues, input then output.
    ``parallel_tool_calls``: False when the target cannot be told to call one tool at a time (Gemini),
    so the hint is ignored rather than refused. ``target`` names the model kind in refusals.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    translation = _Translation(body, drop, target, parallel_tool_calls)
    chat = translation.translate(history, upstream_model)
    return ChatRequest(chat, translation.tools, translation.dropped, _echo(translation.body), translation.params)


def _echo(body: dict) -> dict:
    """The request fields a Response object repeats, with the API's defaults."""
    reasoning_config = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning_config.get("effort"), "summary": reasoning_config.get("summary")},
        "store": body.get("store") is not False,
        "temperature": body.get("temperature"),
        "text": {"format": {"type": "text"}, **(body.get("text") or {})},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation") or "disabled",
        "user": body.get("user"),
    }
