"""OpenAI Chat Completions <-> Vertex AI Gemini translation (pure functions).

Chat maps to ``generateContent`` / ``streamGenerateContent`` (embeddings:
``gemini_embeddings``). As for Anthropic, whatever the OpenAI request
asks for that Gemini cannot honour is refused with ``UnsupportedParameter`` naming
the field, rather than silently dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

from shared.errors import InvalidRequest
from workers.translate import openai_chat as chat
from workers.translate import reasoning
from workers.translate.refusals import refuse_unknown_keys, unsupported_for

# Top-level keys handled below; any other key with a non-None value is refused.
_HANDLED_KEYS = frozenset({
    "model", "messages", "stream", "stream_options", "user", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "stop", "n", "seed", "presence_penalty", "frequency_penalty",
    "response_format", "tools", "tool_choice", "parallel_tool_calls", "logprobs", "reasoning_effort",
})
_FINISH_REASONS = {
    "STOP": "stop", "MAX_TOKENS": "length",
    "SAFETY": "content_filter", "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter", "IMAGE_SAFETY": "content_filter",
}
_TOOL_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
# A fixed table, not `mimetypes`: that reads the host's /etc/mime.types and varies between machines.
_IMAGE_TYPES = {
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".webp": "image/webp", ".heic": "image/heic", ".heif": "image/heif",
}


unsupported = unsupported_for("Vertex AI Gemini models")


def _check_keys(body: dict) -> None:
    refuse_unknown_keys(body, _HANDLED_KEYS, unsupported, equivalent="Gemini")
    if body.get("logprobs") not in (None, False):
        raise unsupported("logprobs", "the gateway does not return Gemini log probabilities")
    if body.get("parallel_tool_calls") is False:
        raise unsupported("parallel_tool_calls", "Gemini cannot be told to call one tool at a time")


# --- messages -----------------------------------------------------------------------------------

def _image_part(image: chat.Image) -> dict:
    if image.url is None:
        return {"inlineData": {"mimeType": image.media_type, "data": image.data}}
    path = urlsplit(image.url).path.lower()
    mime = next((t for ext, t in _IMAGE_TYPES.items() if path.endswith(ext)), "image/jpeg")
    return {"fileData": {"mimeType": mime, "fileUri": image.url}}


def _parts(content: Any, param: str, *, images: bool) -> list[dict]:
    """OpenAI message content -> Gemini parts (text, and images where allowed)."""
    if isinstance(content, str):
        return [{"text": content}]
    return [{"text": part} if isinstance(part, str) else _image_part(part)
            for part in chat.content_parts(content, param, unsupported, images=images, image_schemes=("gs://",))]


def _function_calls(tool_calls: Any, param: str, names: dict[str, str]) -> list[dict]:
    """Assistant tool calls -> functionCall parts; remembers id -> name for later tool results."""
    parts = []
    for call in chat.tool_calls(tool_calls, param, unsupported):
        names[call.id] = call.name
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.arguments}}
        signature = signature_in(call.id)
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


# Gemini 3 signs its function calls (``thoughtSignature``) and refuses a conversation whose
# calls come back unsigned. The OpenAI and Anthropic formats have no place for it but the
# call's id, which every client sends back verbatim: so the id carries it, URL-safe.
SIGNATURE_MARK = "_thoughtsig_"


def signed_call_id(call_id: str, signature: Any) -> str:
    if not isinstance(signature, str) or not signature:
        return call_id
    return call_id + SIGNATURE_MARK + signature.replace("+", "-").replace("/", "_").rstrip("=")


def signature_in(call_id: str) -> str | None:
    """The thoughtSignature a call id carries (standard base64, as Gemini sent it), if any."""
    _, mark, encoded = call_id.partition(SIGNATURE_MARK)
    if not mark or not encoded:
        return None
    standard = encoded.replace("-", "+").replace("_", "/")
    standard += "=" * (-len(standard) % 4)
    try:
        base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        return None  # not one of ours: an id that happens to contain the mark
    return standard


def _convert_messages(messages: Any) -> tuple[list[dict], list[dict]]:
    """Returns (Gemini contents, system instruction parts)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list", param="messages")
    contents: list[dict] = []
    system: list[dict] = []
    names: dict[str, str] = {}  # tool_call_id -> function name: Gemini matches results by name
    results = chat.ToolResults(contents, "parts")
    for i, msg in enumerate(messages):
        p = f"messages[{i}]"
        role, content = chat.message(msg, p, unsupported, "Gemini")
        if role in ("system", "developer"):
            # Gemini has one systemInstruction and no system turns: hoist, like for Anthropic.
            system.extend(_parts(content, f"{p}.content", images=False))
            continue
        if role == "tool":
            tool_id = msg["tool_call_id"]
            if tool_id not in names:
                raise InvalidRequest(f"'{p}.tool_call_id' {tool_id!r} matches no earlier assistant tool call",
                                     param=f"{p}.tool_call_id")
            text = "".join(part["text"] for part in _parts(content, f"{p}.content", images=False))
            results.add({"functionResponse": {"name": names[tool_id], "response": {"content": text}}})
            continue
        tool_calls = msg.get("tool_calls")
        parts = [] if content is None else _parts(content, f"{p}.content", images=True)
        # Gemini rejects empty text parts; SDKs often send content "" alongside tool calls.
        parts = [part for part in parts if part.get("text") != ""]
        if tool_calls:
            parts += _function_calls(tool_calls, f"{p}.tool_calls", names)
        if not parts:
            raise InvalidRequest(f"'{p}.content' must not be empty", param=f"{p}.content")
        contents.append({"role": "user" if role == "user" else "model", "parts": parts})
        results.close()
    if not contents:
        raise InvalidRequest("'messages' needs at least one user or assistant message", param="messages")
    return contents, system


# --- tools and generation settings --------------------------------------------------------------

def _convert_tools(tools: Any) -> list[dict]:
    declarations = []
    for tool in chat.function_tools(tools, unsupported):
        declaration = {"name": tool.name}
        if tool.description is not None:
            declaration["description"] = tool.description
        if tool.parameters is not None:
            declaration["parameters"] = tool.parameters
        declarations.append(declaration)
    return [{"functionDeclarations": declarations}] if declarations else []


def _convert_tool_choice(choice: Any) -> dict:
    if isinstance(choice, str) and choice in _TOOL_MODES:
        return {"mode": _TOOL_MODES[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise InvalidRequest("'tool_choice.function.name' must be a string", param="tool_choice.function.name")
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    if isinstance(choice, dict):
        raise unsupported("tool_choice", f"tool_choice type {choice.get('type')!r}")
    raise InvalidRequest("'tool_choice' must be auto, none, required or a function choice", param="tool_choice")


def _generation_config(body: dict) -> dict:
    config: dict[str, Any] = {}
    for key, name in (("temperature", "temperature"), ("top_p", "topP"),
                      ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if body.get(key) is not None:
            if isinstance(body[key], bool) or not isinstance(body[key], int | float):
                raise InvalidRequest(f"'{key}' must be a number", param=key)
            config[name] = body[key]
    value = chat.max_tokens(body)
    if value is not None:
        config["maxOutputTokens"] = value
    stops = chat.stop_sequences(body)
    if stops:
        config["stopSequences"] = stops
    n = body.get("n")
    if n is not None:
        if n != 1 or isinstance(n, bool):
            raise unsupported("n", "only n=1: the gateway returns one choice")
        config["candidateCount"] = 1
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRequest("'seed' must be an integer", param="seed")
        config["seed"] = seed
    fmt = body.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        if kind == "json_object":
            config["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema")
            if not isinstance(schema, dict):
                raise InvalidRequest("'response_format.json_schema.schema' must be an object",
                                     param="response_format.json_schema.schema")
            config["responseMimeType"] = "application/json"
            config["responseSchema"] = schema
        elif kind != "text":
            raise unsupported("response_format", "only text, json_object and json_schema")
    effort = reasoning.effort(body.get("reasoning_effort"))
    if effort is not None:
        # A budget, as Google's own OpenAI-compatible endpoint maps it; Gemini 3 still takes budgets.
        budget = 0 if effort == "none" else min(reasoning.THINKING_BUDGETS[effort], reasoning.MAX_GEMINI_BUDGET)
        config["thinkingConfig"] = {"thinkingBudget": budget}
    return config


def chat_request_to_gemini(body: dict) -> dict:
    """OpenAI chat request body -> Vertex ``generateContent`` body (the model is in the URL)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    _check_keys(body)
    contents, system = _convert_messages(body.get("messages"))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.get("tools") is not None:
        tools = _convert_tools(body["tools"])
        if tools:
            out["tools"] = tools
    if body.get("tool_choice") is not None:
        out["toolConfig"] = {"functionCallingConfig": _convert_tool_choice(body["tool_choice"])}
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


# --- responses ----------------------------------------------------------------------------------

def _tool_call(response_id: str, index: int, part: dict) -> dict:
    call = part["functionCall"]
    name, arguments = call.get("name") or "", json.dumps(call.get("args") or {})
    # Gemini names no call ids; derive one so the same answer always gets the same ids.
    digest = hashlib.sha256(f"{response_id}\0{index}\0{name}\0{arguments}".encode()).hexdigest()
    call_id = signed_call_id(f"call_{digest[:24]}", part.get("thoughtSignature"))
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _visible_parts(candidate: dict) -> list[dict]:
    # Thought summaries (`thought: true`) are the model's reasoning, not its answer.
    parts = (candidate.get("content") or {}).get("parts") or []
    return [part for part in parts if isinstance(part, dict) and not part.get("thought")]


def gemini_finish_reason(reason: str | None, *, tool_calls: bool) -> str:
    finish = _FINISH_REASONS.get(reason or "", "stop")
    return "tool_calls" if finish == "stop" and tool_calls else finish


def gemini_usage_to_chat(meta: dict) -> dict:
    """usageMetadata -> OpenAI usage. Thinking tokens are billed output, so they count as completion."""
    prompt = int(meta.get("promptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    completion = int(meta.get("candidatesTokenCount") or 0) + thoughts
    total = int(meta.get("totalTokenCount") or prompt + completion)
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}
    if meta.get("cachedContentTokenCount"):
        usage["prompt_tokens_details"] = {"cached_tokens": int(meta["cachedContentTokenCount"])}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def gemini_response_to_chat(resp: dict, *, requested_model: str, created: int, response_id: str) -> dict:
    """Vertex ``generateContent`` response -> OpenAI ``chat.completion`` object."""
    candidates = resp.get("candidates") or []
    texts: list[str] = []
    tool_calls: list[dict] = []
    if candidates:
        for part in _visible_parts(candidates[0]):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part.get("functionCall"), dict):
                tool_calls.append(_tool_call(response_id, len(tool_calls), part))
        finish = gemini_finish_reason(candidates[0].get("finishReason"), tool_calls=bool(tool_calls))
    else:
        finish = "content_filter"  # the prompt itself was blocked (promptFeedback.blockReason)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{response_id}",
        "object": "chat.completion",
        "created": created,
        "model": requested_model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": gemini_usage_to_chat(resp.get("usageMetadata") or {}),
    }


class GeminiStreamToChat:
    """Streamed GenerateContentResponse objects -> OpenAI ``chat.completion.chunk`` dicts."""

    def __init__(self, requested_model: str, created: int, response_id: str, include_usage: bool):
        self.requested_model = requested_model
        self.created = created
        self.response_id = response_id
        self.include_usage = include_usage
        self._id = f"chatcmpl-{response_id}"
        self._started = False
        self._tool_calls = 0
        self._meta: dict | None = None

    @property
    def usage(self) -> dict | None:
        return None if self._meta is None else gemini_usage_to_chat(self._meta)

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        if not self._started:
            delta = {"role": "assistant", **delta}
            self._started = True
        return {"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.requested_model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}

    def feed(self, chunk: dict) -> list[dict]:
        if isinstance(chunk.get("usageMetadata"), dict):
            self._meta = chunk["usageMetadata"]  # cumulative: the last one seen is the whole stream's
        candidates = chunk.get("candidates") or []
        if not candidates:
            blocked = (chunk.get("promptFeedback") or {}).get("blockReason")
            return [self._chunk({}, "content_filter")] if blocked else []
        out = []
        parts = _visible_parts(candidates[0])
        text = "".join(part["text"] for part in parts if isinstance(part.get("text"), str))
        if text:
            out.append(self._chunk({"content": text}))
        for part in parts:
            if isinstance(part.get("functionCall"), dict):
                # Gemini sends each call whole, so it is one complete tool_calls delta.
                call = {"index": self._tool_calls, **_tool_call(self.response_id, self._tool_calls, part)}
                self._tool_calls += 1
                out.append(self._chunk({"tool_calls": [call]}))
        reason = candidates[0].get("finishReason")
        if reason:
            out.append(self._chunk({}, gemini_finish_reason(reason, tool_calls=self._tool_calls > 0)))
        return out

    def finish(self) -> list[dict]:
        if not self.include_usage:
            return []
        usage = self.usage or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return [{"id": self._id, "object": "chat.completion.chunk", "created": self.created,
                 "model": self.requested_model, "choices": [], "usage": usage}]
