"""The chat pivot's answer -> an OpenAI Responses API ``Response`` object (pure functions).

Shapes: openai-python types/responses/response.py (``Response``), response_output_item.py
(``ResponseOutputMessage``, ``ResponseReasoningItem``, ``ResponseFunctionToolCall``,
``ResponseCustomToolCall``), response_usage.py. Codex reads the items back
(codex-rs protocol/src/models.rs ``ResponseItem``) and its token counts from
``usage`` (codex-api/src/sse/responses.rs ``ResponseCompletedUsage``: input_tokens,
input_tokens_details.cached_tokens, output_tokens, output_tokens_details.reasoning_tokens,
total_tokens). The streamed form (``responses_stream``) builds the same items.
"""

from __future__ import annotations

import json
from typing import Any

from workers.translate.responses_items import ResponsesTool, ToolNames, item_id, seal
from workers.translate.responses_request import CUSTOM_ARGUMENT, ChatRequest

# finish_reason -> (status, incomplete_details.reason); openai-python response.py IncompleteDetails.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def status_of(finish_reason: str | None) -> tuple[str, dict | None]:
    """A chat finish_reason as a Response's status and incomplete_details."""
    reason = _INCOMPLETE.get(finish_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def responses_usage(usage: dict | None) -> dict:
    """Chat usage -> Responses usage (reasoning and cached tokens in their details)."""
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning_tokens = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "input_tokens": prompt,
        # cache_write_tokens: the pivot does not count prompt-cache writes apart.
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
    }


def response_object(request: ChatRequest, *, response_id: str, created_at: int | float, model: str, status: str,
                    output: list[dict], usage: dict | None, incomplete: dict | None = None,
                    error: dict | None = None, completed_at: int | float | None = None) -> dict:
    """A ``Response`` object in any state (in_progress, completed, incomplete, failed)."""
    response: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "model": model,
        "output": output,
        "usage": usage,
        **request.echo,
    }
    if status == "completed":
        response["completed_at"] = completed_at if completed_at is not None else created_at
    return response


# --- output items --------------------------------------------------------------------------------

def reasoning_item(item_ref: str, text: str, blocks: list[dict]) -> dict:
    """Thinking as a reasoning item: its text as the summary, the blocks sealed for the next turn."""
    item: dict[str, Any] = {"id": item_ref, "type": "reasoning",
                            "summary": [{"type": "summary_text", "text": text}] if text else []}
    sealed = seal(blocks)
    if sealed is not None:
        item["encrypted_content"] = sealed
    return item


def text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(text: str) -> dict:
    return {"type": "refusal", "refusal": text}


def message_item(item_ref: str, parts: list[dict], status: str) -> dict:
    return {"id": item_ref, "type": "message", "status": status, "role": "assistant", "content": parts}


def custom_input(arguments: str) -> str:
    """A custom tool's raw input, unwrapped from the one-string-argument function it was sent as."""
    try:
        args = json.loads(arguments)
    except (TypeError, ValueError):
        return arguments
    value = args.get(CUSTOM_ARGUMENT) if isinstance(args, dict) else None
    return value if isinstance(value, str) else arguments  # not ours: keep what the model wrote


def call_item(tool: ResponsesTool, item_ref: str, call_id: str, arguments: str, status: str) -> dict:
    """A tool call as the item type the client's tool was: function_call or custom_tool_call."""
    if tool.kind == "custom":
        item = {"id": item_ref, "type": "custom_tool_call", "status": status, "call_id": call_id,
                "name": tool.name, "input": custom_input(arguments)}
    else:
        item = {"id": item_ref, "type": "function_call", "status": status, "call_id": call_id,
                "name": tool.name, "arguments": arguments}
    if tool.namespace is not None:
        item["namespace"] = tool.namespace
    return item


def call_prefix(tool: ResponsesTool) -> str:
    return "ctc" if tool.kind == "custom" else "fc"


def reasoning_text(message_or_delta: dict) -> str:
    """The pivot's reasoning text: ``reasoning_content`` (DeepSeek's name, the gateway's own), or
    ``reasoning``, which vLLM answers with since vllm-project/vllm#27752."""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(message_or_delta.get(key), str):
            return message_or_delta[key]
    return ""


def output_items(message: dict, tools: ToolNames, response_id: str, item_status: str) -> list[dict]:
    """A chat assistant message -> output items: reasoning first, then the message, then the tool calls."""
    items: list[dict] = []
    text = reasoning_text(message)
    blocks = message.get("thinking_blocks") if isinstance(message.get("thinking_blocks"), list) else []
    if text or blocks:
        items.append(reasoning_item(item_id("rs", response_id, len(items)), text, blocks))
    parts = []
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append(text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append(refusal_part(message["refusal"]))
    if parts:
        items.append(message_item(item_id("msg", response_id, len(items)), parts, item_status))
    for k, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        tool = tools.tool(fn.get("name") or "")
        call_id = call.get("id") or f"call_{response_id.removeprefix('resp_')}_{k}"
        items.append(call_item(tool, item_id(call_prefix(tool), response_id, len(items)), call_id,
                               fn.get("arguments") or "", item_status))
    return items


def chat_response_to_response(resp: dict, request: ChatRequest, *, response_id: str, created_at: int | float,
                              requested_model: str, completed_at: int | float | None = None) -> dict:
    """A ``chat.completion`` (only choices[0]) -> a ``Response`` object."""
    choices = resp.get("choices") or [{}]
    status, incomplete = status_of(choices[0].get("finish_reason"))
    item_status = "incomplete" if status == "incomplete" else "completed"
    output = output_items(choices[0].get("message") or {}, request.tools, response_id, item_status)
    return response_object(request, response_id=response_id, created_at=created_at, model=requested_model,
                           status=status, output=output, usage=responses_usage(resp.get("usage")),
                           incomplete=incomplete, completed_at=completed_at)
