"""What the capture server (``tests.clients.capture``) answers, in each wire format: model lists,
Anthropic Messages and OpenAI Responses, whole or as their streams' events, with a scripted tool call
or the reply to a tool's result, and a failure event for a stream that breaks off.

Wire formats followed (event names, fields, order):
- Anthropic streaming: https://docs.anthropic.com/en/docs/build-with-claude/streaming
- OpenAI Responses streaming: https://platform.openai.com/docs/api-reference/responses-streaming ,
  and Codex's own parser, codex-rs/codex-api/src/sse/responses.rs in github.com/openai/codex
  (it needs ``response.output_item.done`` for each item and ``response.completed`` to end a turn).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

MODEL_IDS = ("claude-sonnet-4-5", "gpt-5-codex")


@dataclass
class ToolCall:
    """The one tool call the server makes when a request offers a tool named ``name``: ``arguments``
    is a function tool's arguments (a dict), or a custom tool's input (a string)."""

    name: str
    arguments: dict | str


def failure_event(kind: str, first: dict) -> tuple[str, dict]:
    """A failure after the stream began: Anthropic's or OpenAI's ``error`` event, or ``response.failed``."""
    if kind == "response.failed":
        response = dict(first["response"], status="failed",
                        error={"code": "server_error", "message": "capture server: injected failure"})
        return kind, {"type": kind, "sequence_number": 3, "response": response}
    if first.get("type") == "message_start":  # Anthropic
        return "error", {"type": "error", "error": {"type": "api_error", "message": "capture server: injected"}}
    return "error", {"type": "error", "sequence_number": 3, "code": "server_error",
                     "message": "capture server: injected failure", "param": None}


def reply_text(tool_result: str | None) -> str:
    if tool_result is None:
        return "hi"
    return "Tool said: " + " ".join(tool_result.split())[:200]


def models_payload(anthropic: bool) -> dict:
    if anthropic:
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
                for m in MODEL_IDS]
        return {"data": data, "has_more": False, "first_id": MODEL_IDS[0], "last_id": MODEL_IDS[-1]}
    return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "capture"}
                                       for m in MODEL_IDS]}


# --- Anthropic Messages ---------------------------------------------------------------------------

def anthropic_tool_names(tools) -> set[str]:
    return {t.get("name") for t in tools or [] if isinstance(t, dict)}


def _last_user_blocks(body: dict) -> list:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if not messages or messages[-1].get("role") != "user":
        return []
    content = messages[-1].get("content")
    return content if isinstance(content, list) else []


def anthropic_newest_is_tool_result(body: dict) -> bool:
    return any(isinstance(b, dict) and b.get("type") == "tool_result" for b in _last_user_blocks(body))


def anthropic_tool_result_text(body: dict) -> str | None:
    texts = []
    for block in _last_user_blocks(body):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            content = block.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            texts.append(str(content or ""))
    return " ".join(texts) if texts else None


def anthropic_message(model: str, text: str, call: ToolCall | None, input_tokens: int) -> dict:
    content = ([{"type": "tool_use", "id": "toolu_capture_1", "name": call.name, "input": call.arguments}]
               if call else [{"type": "text", "text": text}])
    return {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": "tool_use" if call else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 5}}


def anthropic_events(model: str, text: str, call: ToolCall | None, input_tokens: int) -> list[tuple[str, dict]]:
    message = anthropic_message(model, text, call, input_tokens)
    start = dict(message, content=[], stop_reason=None, usage={"input_tokens": input_tokens, "output_tokens": 1})
    if call:
        block = {"type": "tool_use", "id": "toolu_capture_1", "name": call.name, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(call.arguments)}
    else:
        block, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": text}
    return [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                           "usage": {"input_tokens": input_tokens, "output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ]


# --- OpenAI Responses -----------------------------------------------------------------------------

def responses_tools(body: dict) -> dict[str, str]:
    """Tool name -> its type (``function`` or ``custom``): the request's ``tools``, and those of its
    ``additional_tools`` input items (where Codex puts them for "responses-lite" models), looking
    inside ``namespace`` tools too."""
    tools = list(body.get("tools") or [])
    for item in body.get("input") if isinstance(body.get("input"), list) else []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            tools += item.get("tools") or []
    found: dict[str, str] = {}
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") in ("function", "custom") and tool.get("name"):
            found[tool["name"]] = tool["type"]
        for inner in tool.get("tools") or []:
            if isinstance(inner, dict) and inner.get("name"):
                found[inner["name"]] = inner.get("type", "function")
    return found


def responses_tool_result_text(items) -> str | None:
    """The output of the tool call(s) in the newest turn, or None when the newest item is not one."""
    if not isinstance(items, list) or not items:
        return None
    texts = []
    for item in reversed(items):
        if not isinstance(item, dict) or item.get("type") not in ("function_call_output", "custom_tool_call_output"):
            break
        output = item.get("output")
        if isinstance(output, list):
            output = " ".join(p.get("text", "") for p in output if isinstance(p, dict))
        texts.insert(0, str(output or ""))
    return " ".join(texts) if texts else None


def responses_events(model: str, text: str, call: ToolCall | None, kind: str | None,
                     input_tokens: int) -> list[tuple[str, dict]]:
    response_id = "resp_" + uuid.uuid4().hex[:24]
    created = int(time.time())

    def response(status: str, output: list, usage: dict | None) -> dict:
        return {"id": response_id, "object": "response", "created_at": created, "status": status, "error": None,
                "incomplete_details": None, "model": model, "output": output, "parallel_tool_calls": True,
                "tool_choice": "auto", "tools": [], "usage": usage}

    events: list[tuple[str, dict]] = []

    def emit(name: str, **data) -> None:
        events.append((name, {"type": name, "sequence_number": len(events), **data}))

    emit("response.created", response=response("in_progress", [], None))
    emit("response.in_progress", response=response("in_progress", [], None))
    if call and kind == "custom":
        payload = json.dumps(call.arguments) if not isinstance(call.arguments, str) else call.arguments
        item = {"id": "ctc_capture_1", "type": "custom_tool_call", "status": "completed", "call_id": "call_capture_1",
                "name": call.name, "input": payload}
        emit("response.output_item.added", output_index=0, item=dict(item, input="", status="in_progress"))
        emit("response.custom_tool_call_input.delta", item_id=item["id"], output_index=0, delta=payload)
        emit("response.custom_tool_call_input.done", item_id=item["id"], output_index=0, input=payload)
    elif call:
        arguments = json.dumps(call.arguments)
        item = {"id": "fc_capture_1", "type": "function_call", "status": "completed", "call_id": "call_capture_1",
                "name": call.name, "arguments": arguments}
        emit("response.output_item.added", output_index=0, item=dict(item, arguments="", status="in_progress"))
        emit("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=arguments)
        emit("response.function_call_arguments.done", item_id=item["id"], output_index=0, arguments=arguments)
    else:
        part = {"type": "output_text", "text": text, "annotations": []}
        item = {"id": "msg_" + uuid.uuid4().hex[:24], "type": "message", "status": "completed", "role": "assistant",
                "content": [part]}
        emit("response.output_item.added", output_index=0, item=dict(item, content=[], status="in_progress"))
        emit("response.content_part.added", item_id=item["id"], output_index=0, content_index=0,
             part=dict(part, text=""))
        emit("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0, delta=text)
        emit("response.output_text.done", item_id=item["id"], output_index=0, content_index=0, text=text)
        emit("response.content_part.done", item_id=item["id"], output_index=0, content_index=0, part=part)
    emit("response.output_item.done", output_index=0, item=item)
    usage = {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input_tokens + 5}
    emit("response.completed", response=response("completed", [item], usage))
    return events
