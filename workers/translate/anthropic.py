"""OpenAI Chat Completions <-> Anthropic Messages translation (pure functions).

Anything the OpenAI request asks for that Anthropic cannot honour is refused
with ``UnsupportedParameter`` naming the field: silently dropping it would give
the client an answer to a different question than the one it asked.
"""

from __future__ import annotations

import json
from typing import Any

from shared.errors import InvalidRequest, UpstreamError
from workers.translate import openai_chat as chat
from workers.translate import reasoning
from workers.translate.refusals import refuse_unknown_keys, unsupported_for

# Top-level keys handled below. Everything else (seed, logit_bias, metadata, ...) is
# refused unless its value is None, so new OpenAI features never pass unnoticed.
_HANDLED_KEYS = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "stop", "tools", "tool_choice", "parallel_tool_calls", "user",
        "n", "response_format", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
        "reasoning_effort",
    }
)
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


_unsupported = unsupported_for("Anthropic models")


def _check_keys(body: dict) -> None:
    refuse_unknown_keys(body, _HANDLED_KEYS, _unsupported, equivalent="Anthropic")
    def refuse_unless(key: str, ok: bool, why: str) -> None:
        if body.get(key) is not None and not ok:
            raise _unsupported(key, why)

    value = body.get("n")
    refuse_unless("n", value == 1 and not isinstance(value, bool), "only n=1")
    for key in ("presence_penalty", "frequency_penalty"):
        refuse_unless(key, body.get(key) == 0 and not isinstance(body.get(key), bool), "only 0")
    refuse_unless("logprobs", body.get("logprobs") is False, "Anthropic returns no log probabilities")
    refuse_unless("top_logprobs", False, "Anthropic returns no log probabilities")
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise _unsupported("response_format", "only {'type': 'text'}")


def _image_block(image: chat.Image) -> dict:
    if image.url is not None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": image.data}}


def _content_blocks(content: Any, param: str, *, images: bool) -> list[dict]:
    """OpenAI content parts -> Anthropic blocks (text, and images where allowed)."""
    return [{"type": "text", "text": part} if isinstance(part, str) else _image_block(part)
            for part in chat.content_parts(content, param, _unsupported, images=images)]


def _tool_use_blocks(tool_calls: Any, param: str) -> list[dict]:
    return [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in chat.tool_calls(tool_calls, param, _unsupported)]


def _convert_messages(messages: Any) -> tuple[list[dict], list[tuple[Any, str]]]:
    """Returns (Anthropic messages, [(system content, param)])."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list", param="messages")
    out: list[dict] = []
    system: list[tuple[Any, str]] = []
    results = chat.ToolResults(out, "content")
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        role, content = chat.message(msg, p, _unsupported, "Anthropic")
        if role in ("system", "developer"):
            # Anthropic has no mid-conversation system turn; hoisting is the usual practice.
            if not isinstance(content, str):
                content = _content_blocks(content, f"{p}.content", images=False)
            system.append((content, p))
            continue
        if role == "tool":
            if not isinstance(content, str):
                content = _content_blocks(content, f"{p}.content", images=False)
            results.add({"type": "tool_result", "tool_use_id": msg["tool_call_id"], "content": content})
            continue
        tool_calls = msg.get("tool_calls")
        thinking = (reasoning.thinking_blocks(msg["thinking_blocks"], f"{p}.thinking_blocks")
                    if role == "assistant" and msg.get("thinking_blocks") else [])
        if content is None and not tool_calls and not thinking:
            raise InvalidRequest(f"'{p}.content' is required", param=f"{p}.content")
        if tool_calls:
            blocks = [] if content is None else (
                [{"type": "text", "text": content}] if isinstance(content, str)
                else _content_blocks(content, f"{p}.content", images=True))
            # Anthropic rejects empty text blocks; SDKs often send content "" with tool calls.
            blocks = [b for b in blocks if not (b["type"] == "text" and not b["text"])]
            content = blocks + _tool_use_blocks(tool_calls, f"{p}.tool_calls")
        elif not isinstance(content, str) and content is not None:
            content = _content_blocks(content, f"{p}.content", images=True)
        if thinking:
            # Thinking goes back first and unchanged: Anthropic checks its signature, and wants it
            # whenever the turn used tools (its extended-thinking guide, "preserving thinking blocks").
            text = [] if not content else [{"type": "text", "text": content}] if isinstance(content, str) else content
            content = thinking + text
        if role == "user" and results.is_open:  # the user's words join the results' turn
            out[-1]["content"].extend([{"type": "text", "text": content}] if isinstance(content, str)
                                      else content)
        else:
            out.append({"role": role, "content": content})
        results.close()
    if not out:
        raise InvalidRequest("'messages' needs at least one user or assistant message", param="messages")
    return out, system


def _system_field(system: list[tuple[Any, str]]) -> str | list[dict]:
    if all(isinstance(content, str) for content, _ in system):
        return "\n\n".join(content for content, _ in system)
    blocks: list[dict] = []
    for content, _ in system:
        blocks.extend([{"type": "text", "text": content}] if isinstance(content, str) else content)
    return blocks


def _convert_tools(tools: Any) -> list[dict]:
    out = []
    for tool in chat.function_tools(tools, _unsupported):
        converted = {"name": tool.name}
        if tool.description is not None:
            converted["description"] = tool.description
        converted["input_schema"] = tool.parameters or {"type": "object", "properties": {}}
        out.append(converted)
    return out


def _convert_tool_choice(choice: Any) -> dict:
    named = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
    if isinstance(choice, str) and choice in named:
        return dict(named[choice])
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise InvalidRequest("'tool_choice.function.name' must be a string",
                                 param="tool_choice.function.name")
        return {"type": "tool", "name": name}
    if isinstance(choice, dict):
        raise _unsupported("tool_choice", f"tool_choice type {choice.get('type')!r}")
    raise InvalidRequest("'tool_choice' must be auto, none, required or a function choice",
                         param="tool_choice")


THINKING_STYLES = ("budget", "adaptive")


def _thinking(body: dict, out: dict, default_max_tokens: int, style: str) -> None:
    """``reasoning_effort`` -> Anthropic ``thinking``: a token budget (every thinking model), or
    adaptive thinking with ``output_config.effort`` (the newest models, which refuse budgets)."""
    if style not in THINKING_STYLES:
        raise ValueError(f"unknown thinking style {style!r}")
    effort = reasoning.effort(body.get("reasoning_effort"))
    if effort is None or effort == "none":
        return  # thinking is off unless asked for
    if style == "adaptive":
        out["thinking"] = {"type": "adaptive"}
        out["output_config"] = {"effort": reasoning.ADAPTIVE_EFFORTS[effort]}
        return
    budget = reasoning.THINKING_BUDGETS[effort]
    if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
        # The default answer allowance stays whole: the budget comes on top of it.
        out["max_tokens"] = default_max_tokens + budget
    elif out["max_tokens"] <= reasoning.MIN_ANTHROPIC_BUDGET:
        raise _unsupported("reasoning_effort", f"thinking needs max_tokens above {reasoning.MIN_ANTHROPIC_BUDGET}")
    else:
        budget = min(budget, out["max_tokens"] - 1)  # OpenAI's max counts reasoning too, as Anthropic's does
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}


def chat_request_to_anthropic(body: dict, *, upstream_model: str, default_max_tokens: int,
                              thinking: str = "budget") -> dict:
    """OpenAI chat request body -> Anthropic Messages request body (without `stream`).

    ``thinking`` is how the model takes ``reasoning_effort``: "budget" or "adaptive" (THINKING_STYLES).
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    _check_keys(body)
    messages, system = _convert_messages(body.get("messages"))
    out: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": chat.max_tokens(body) or default_max_tokens,
        "messages": messages,
    }
    _thinking(body, out, default_max_tokens, thinking)
    if system:
        out["system"] = _system_field(system)
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise InvalidRequest("'temperature' must be a number", param="temperature")
        if temperature > 1:
            raise _unsupported("temperature", "OpenAI allows 0-2 but Anthropic only 0-1")
        out["temperature"] = temperature
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stops = chat.stop_sequences(body)
    if stops:
        out["stop_sequences"] = stops
    if body.get("tools") is not None:
        out["tools"] = _convert_tools(body["tools"])
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _convert_tool_choice(body["tool_choice"])
    if body.get("parallel_tool_calls") is False and out.get("tools"):
        choice = out.setdefault("tool_choice", {"type": "auto"})
        # Anthropic's "none" choice takes no such flag, and no tool runs anyway.
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise InvalidRequest("'user' must be a string", param="user")
        out["metadata"] = {"user_id": user}
    return out


def anthropic_stop_reason_to_finish_reason(reason: str | None) -> str:
    """Anthropic stop_reason -> OpenAI finish_reason; unknown reasons read as a normal stop."""
    return _FINISH_REASONS.get(reason or "", "stop")


_INPUT_TOKEN_KEYS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _input_tokens(usage: dict) -> int:
    """Anthropic counts cached prompt tokens apart; OpenAI's prompt_tokens includes them."""
    return sum(usage.get(k) or 0 for k in _INPUT_TOKEN_KEYS)


def _chat_usage(prompt: int, completion: int, cached: int) -> dict:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                             "total_tokens": prompt + completion}
    if cached:  # the part of prompt_tokens read from Anthropic's prompt cache
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def _thinking_block(block: dict) -> dict:
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    return {"type": "thinking", "thinking": block.get("thinking") or "", "signature": block.get("signature") or ""}


def anthropic_response_to_chat(resp: dict, *, requested_model: str, created: int) -> dict:
    """Anthropic Messages response -> OpenAI `chat.completion` object."""
    texts: list[str] = []
    tool_calls: list[dict] = []
    thinking: list[dict] = []
    for block in resp.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind in reasoning.THINKING_BLOCK_TYPES:
            thinking.append(_thinking_block(block))
        elif kind == "tool_use":
            tool_calls.append({
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input") or {})},
            })
        # server-side tool blocks have no OpenAI field.
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if thinking:  # the pivot's thinking extension (workers/translate/reasoning.py)
        message["reasoning_content"] = "".join(b.get("thinking", "") for b in thinking)
        message["thinking_blocks"] = thinking
    usage = resp.get("usage") or {}
    prompt = _input_tokens(usage)
    completion = usage.get("output_tokens") or 0
    return {
        "id": f"chatcmpl-{resp.get('id', '')}",
        "object": "chat.completion",
        "created": created,
        "model": requested_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": anthropic_stop_reason_to_finish_reason(resp.get("stop_reason")),
        }],
        "usage": _chat_usage(prompt, completion, usage.get("cache_read_input_tokens") or 0),
    }


class AnthropicStreamToChat:
    """Anthropic stream events -> OpenAI `chat.completion.chunk` dicts, one event at a time."""

    def __init__(self, requested_model: str, created: int, include_usage: bool):
        self.requested_model = requested_model
        self.created = created
        self.include_usage = include_usage
        self._id = "chatcmpl-"
        self._prompt: int | None = None
        self._completion = 0
        self._cached = 0
        self._tool_calls: dict[Any, int] = {}  # Anthropic block index -> OpenAI tool call index
        self._thinking: dict[Any, dict] = {}  # Anthropic block index -> the thinking block being streamed

    @property
    def usage(self) -> dict | None:
        if self._prompt is None:
            return None
        return _chat_usage(self._prompt, self._completion, self._cached)

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.requested_model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def feed(self, event: str, data: dict) -> list[dict]:
        if event == "message_start":
            message = data.get("message") or {}
            self._id = f"chatcmpl-{message.get('id', '')}"
            usage = message.get("usage") or {}
            self._prompt = _input_tokens(usage)
            self._cached = usage.get("cache_read_input_tokens") or 0
            self._completion = usage.get("output_tokens") or 0
            return [self._chunk({"role": "assistant", "content": ""})]
        if event == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "thinking":
                self._thinking[data.get("index")] = _thinking_block(block)
                return []
            if block.get("type") == "redacted_thinking":  # arrives whole
                return [self._chunk({"thinking_blocks": [_thinking_block(block)]})]
            if block.get("type") != "tool_use":
                return []  # text starts empty; server-side blocks have no OpenAI field
            k = self._tool_calls[data.get("index")] = len(self._tool_calls)
            return [self._chunk({"tool_calls": [{"index": k, "id": block.get("id"), "type": "function",
                                                 "function": {"name": block.get("name"), "arguments": ""}}]})]
        if event == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text") or ""})]
            thinking = self._thinking.get(data.get("index"))
            if delta.get("type") == "thinking_delta" and thinking is not None:
                thinking["thinking"] += delta.get("thinking") or ""
                return [self._chunk({"reasoning_content": delta.get("thinking") or ""})]
            if delta.get("type") == "signature_delta" and thinking is not None:
                thinking["signature"] += delta.get("signature") or ""
                return []
            k = self._tool_calls.get(data.get("index"))
            if delta.get("type") == "input_json_delta" and k is not None:
                return [self._chunk({"tool_calls": [{"index": k, "function": {
                    "arguments": delta.get("partial_json") or ""}}]})]
            return []
        if event == "content_block_stop" and data.get("index") in self._thinking:
            # The pivot gets each thinking block whole, signature included, once it is complete.
            return [self._chunk({"thinking_blocks": [self._thinking.pop(data.get("index"))]})]
        if event == "message_delta":
            # message_delta usage is cumulative; recent API versions repeat the input counts there.
            usage = data.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self._completion = usage["output_tokens"]
            if any(usage.get(k) is not None for k in _INPUT_TOKEN_KEYS):
                self._prompt = _input_tokens(usage)
                self._cached = usage.get("cache_read_input_tokens") or 0
            reason = (data.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, anthropic_stop_reason_to_finish_reason(reason))]
        if event == "message_stop":
            if not self.include_usage:
                return []
            usage = self.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
            return [{"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                     "model": self.requested_model, "choices": [], "usage": usage}]
        if event == "error":
            error = data.get("error") or {}
            raise UpstreamError(error.get("message") or None)
        return []  # ping, and events added to the protocol later
