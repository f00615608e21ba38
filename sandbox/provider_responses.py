"""The sandbox provider's OpenAI Responses API: POST /v1/responses, whole and streamed.

Pure: ``sandbox.provider`` stores responses and serves them. The shapes follow the official SDK's types
(openai-python src/openai/types/responses/: response.py, response_usage.py, response_output_message.py,
response_function_tool_call.py, response_custom_tool_call.py, response_reasoning_item.py and the
*_event.py files of response_stream_event.py) and the API reference's streaming events
(developers.openai.com/api/reference/resources/responses/streaming-events). Codex reads the stream as
codex-rs/codex-api/src/sse/responses.rs does: it builds its history from `response.output_item.done`,
takes `response.completed`'s `id` and `usage` (input_tokens, input_tokens_details.cached_tokens,
output_tokens, output_tokens_details.reasoning_tokens, total_tokens) and fails a stream that closes
without it.

Every request field is accepted and the unknown ones ignored (Codex sends `client_metadata`,
`prompt_cache_key`, `include`, `namespace` tools...); input items of any type are accepted, and read:
messages (any role; `system`/`developer` ones are instructions, not turns), `function_call_output` and
`custom_tool_call_output` (the tool's result, a string or a list of input_text parts). The answer follows
sandbox.provider_script: a tool call the directive scripts, reasoning when `reasoning.effort` is set (its
summary only when `reasoning.summary` asks for one, as OpenAI does), else "Sandbox reply: ...".

A stream is, in order (each event with its `sequence_number`, from 0):
    response.created, response.in_progress,
    reasoning (when asked): response.output_item.added, [response.reasoning_summary_part.added,
        response.reasoning_summary_text.delta..., response.reasoning_summary_text.done,
        response.reasoning_summary_part.done], response.output_item.done,
    a message: response.output_item.added, response.content_part.added, response.output_text.delta...,
        response.output_text.done, response.content_part.done, response.output_item.done,
    or a function call: response.output_item.added, response.function_call_arguments.delta...,
        response.function_call_arguments.done, response.output_item.done,
    or a custom tool call: the same with response.custom_tool_call_input.delta/.done,
    response.completed (response.incomplete when max_output_tokens cut the text).
`error_after` ends it with response.failed instead (what Codex treats as a retryable failure).
"""

from __future__ import annotations

import time
import uuid

from sandbox import provider_script as script
from sandbox.provider_directives import parse_directive, strip_directives
from sandbox.provider_logic import RequestError, cut_reply, repeat_words
from sandbox.provider_stream import STREAM_ERROR, Answer, fragments, pieces, sse_event

# OpenAI's 400 for less: "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but
# got N instead." (param max_output_tokens, code integer_below_min_value), as its users' logs quote it.
MIN_OUTPUT_TOKENS = 16
TEXT_PARTS = ("input_text", "output_text", "text")
TOOL_OUTPUTS = ("function_call_output", "custom_tool_call_output")
INSTRUCTION_ROLES = ("system", "developer")
SUMMARIES = ("auto", "concise", "detailed")


# --- reading the request ------------------------------------------------------------------------

def content_text(content) -> str:
    """Text of a message content or a tool output: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part["text"] for part in content if isinstance(part, dict)
                        and part.get("type") in TEXT_PARTS and isinstance(part.get("text"), str))
    return ""


def input_items(value) -> list[dict]:
    """The request's `input` as a list of items (a string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise RequestError("Invalid type for 'input': expected a string or an array of input items.",
                       param="input", code="invalid_type")


def request_tools(tools, items: list[dict]) -> list:
    """The request's `tools` and those of its `additional_tools` input items, where Codex puts the tools of its
    default ("responses-lite") models: `{"type": "additional_tools", "role": "developer", "tools": [...]}`
    (tests/clients/TRAFFIC.md, recorded from Codex 0.171.0)."""
    found = list(script.tool_list(tools))
    for item in items:
        if item.get("type") == "additional_tools":
            found += script.tool_list(item.get("tools"))
    return found


def _is_message(item: dict) -> bool:
    return item.get("type", "message") == "message" and "role" in item


def tool_outputs(items: list[dict]) -> str | None:
    """The tool results the newest input items carry, or None when the newest turn is not a tool result."""
    found: list[str] = []
    for item in reversed(items):
        if _is_message(item) and item.get("role") in INSTRUCTION_ROLES:
            continue
        if item.get("type") in TOOL_OUTPUTS:
            found.insert(0, content_text(item.get("output")))
            continue
        break
    return " ".join(" ".join(found).split()) if found else None


def _item_text(item: dict) -> str:
    if _is_message(item):
        return content_text(item.get("content"))
    if item.get("type") in TOOL_OUTPUTS:
        return content_text(item.get("output"))
    return ""  # tool calls and reasoning are the model's own output, like an assistant's tool_calls in chat


def prompt_tokens(instructions, items: list[dict]) -> int:
    """Words of the instructions, the messages and the tool results, directives left out."""
    texts = [instructions if isinstance(instructions, str) else ""]
    if isinstance(instructions, list):  # instructions may be input items too (types/responses/response.py)
        texts += [_item_text(item) for item in instructions if isinstance(item, dict)]
    texts += [_item_text(item) for item in items]
    return sum(len(strip_directives(text).split()) for text in texts)


def _max_output_tokens(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError("Invalid type for 'max_output_tokens': expected an integer.",
                           param="max_output_tokens", code="invalid_type")
    if value < MIN_OUTPUT_TOKENS:
        raise RequestError(f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
                           f"{MIN_OUTPUT_TOKENS}, but got {value} instead.",
                           param="max_output_tokens", code="integer_below_min_value")
    return value


def _reasoning(body: dict) -> tuple[str | None, bool]:
    """(reasoning label or None, whether a summary is asked for)."""
    reasoning = body.get("reasoning")
    if not isinstance(reasoning, dict):
        return None, False
    label = script.openai_effort(reasoning.get("effort"))
    summary = reasoning.get("summary") or reasoning.get("generate_summary")  # the latter is deprecated
    return label, label is not None and summary in SUMMARIES


class Turn:
    """One Responses call: the answer, the ids of its output items and what the Response object echoes."""

    def __init__(self, body: dict, context: list[dict]):
        """`context`: the items of the stored response `previous_response_id` names (its input and output)."""
        self.body = body
        self.items = context + input_items(body.get("input"))
        self.limit = _max_output_tokens(body.get("max_output_tokens"))
        suffix = uuid.uuid4().hex[:24]  # unique, as OpenAI's ids are: two callers never share a response
        self.ids = {kind: f"{kind}_sbx_{suffix}" for kind in ("resp", "msg", "rs", "fc", "ctc", "call")}
        self.created_at = int(time.time())
        label, self.summary = _reasoning(body)
        last_user = next((content_text(item.get("content")) for item in reversed(self.items)
                          if _is_message(item) and item.get("role") == "user"), "")
        text, self.opts = parse_directive(last_user)
        answer = Answer(self.ids["resp"], body.get("model"), prompt_tokens(body.get("instructions"), self.items),
                        0, created=self.created_at)
        results = tool_outputs(self.items)
        subject = text if results is None else " ".join(f"tool said {results}".split())
        if label is not None:
            answer.think(script.thought(label, subject))
        tool = None
        if results is None and "tool" in self.opts and script.tools_allowed(body.get("tool_choice")):
            tool = script.find_tool("responses", request_tools(body.get("tools"), self.items), self.opts["tool"])
        if tool is not None:
            answer.call(self.ids["call"], tool, script.tool_arguments(tool, self.opts, text))
        else:
            if "words" in self.opts and results is None:
                subject = repeat_words(subject, self.opts["words"])
            answer.text, answer.finish, _ = cut_reply("Sandbox reply: " + subject, self.limit, [])
            answer.completion_tokens = len(answer.text.split()) + answer.reasoning_tokens
        self.answer = answer

    @property
    def status(self) -> str:
        return "incomplete" if self.answer.finish == "length" else "completed"

    # --- output items ---

    def reasoning_item(self, done: bool) -> dict:
        summary = [{"type": "summary_text", "text": self.answer.reasoning}] if done and self.summary else []
        item = {"id": self.ids["rs"], "type": "reasoning", "summary": summary}
        if done:  # "populated by default"; the added event's copy "may be incomplete" (response_reasoning_item.py)
            item["encrypted_content"] = self.answer.signature
        return item

    def call_item(self, done: bool) -> dict:
        answer = self.answer
        status = "completed" if done else "in_progress"
        if answer.tool_kind == "custom":
            item = {"id": self.ids["ctc"], "type": "custom_tool_call", "status": status, "call_id": answer.tool_id,
                    "name": answer.tool_name, "input": answer.arguments if done else ""}
        else:
            item = {"id": self.ids["fc"], "type": "function_call", "status": status, "call_id": answer.tool_id,
                    "name": answer.tool_name, "arguments": answer.arguments if done else ""}
        if answer.tool_namespace is not None:
            item["namespace"] = answer.tool_namespace
        return item

    def text_part(self, done: bool) -> dict:
        return {"type": "output_text", "annotations": [], "logprobs": [], "text": self.answer.text if done else ""}

    def message_item(self, done: bool) -> dict:
        return {"id": self.ids["msg"], "type": "message", "status": self.status if done else "in_progress",
                "role": "assistant", "content": [self.text_part(True)] if done else []}

    def output(self) -> list[dict]:
        items = [self.reasoning_item(True)] if self.answer.reasoning is not None else []
        items.append(self.message_item(True) if self.answer.tool_name is None else self.call_item(True))
        return items

    # --- the Response object ---

    def usage(self) -> dict:
        answer = self.answer
        return {"input_tokens": answer.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": answer.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": answer.reasoning_tokens},
                "total_tokens": answer.prompt_tokens + answer.completion_tokens}

    def response(self, status: str | None = None) -> dict:
        """The Response object: in_progress (no output, no usage), or finished (the default)."""
        body, status = self.body, status or self.status
        finished = status not in ("in_progress", "failed")
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        return {
            "id": self.ids["resp"], "object": "response", "created_at": self.created_at, "status": status,
            "background": body.get("background") is True,
            "completed_at": self.created_at if status == "completed" else None,
            "error": {"code": "server_error", "message": STREAM_ERROR} if status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"), "model": body.get("model"),
            "output": self.output() if finished else [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": body.get("safety_identifier"), "service_tier": "default",
            "store": body.get("store") is not False, "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
            "top_logprobs": body.get("top_logprobs", 0), "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": self.usage() if finished else None,
            "user": body.get("user"), "metadata": body.get("metadata") or {},
        }

    def stored(self) -> dict:
        """What `store` keeps: the Response, and the conversation a `previous_response_id` continues."""
        return {"response": self.response(), "context": self.items + self.output()}

    # --- the stream ---

    def events(self) -> list[tuple[str, bytes]]:
        """The stream's events, tagged for sandbox.provider_stream.StreamRun."""
        events: list[tuple[str, bytes]] = []

        def emit(tag: str, kind: str, **fields) -> None:
            events.append((tag, sse_event(kind, {"type": kind, "sequence_number": len(events), **fields})))

        emit("start", "response.created", response=self.response("in_progress"))
        emit("head", "response.in_progress", response=self.response("in_progress"))
        answer, index = self.answer, 0
        if answer.reasoning is not None:
            item_id = self.ids["rs"]
            emit("head", "response.output_item.added", output_index=0, item=self.reasoning_item(False))
            if self.summary:
                where = {"item_id": item_id, "output_index": 0, "summary_index": 0}
                emit("head", "response.reasoning_summary_part.added", **where,
                     part={"type": "summary_text", "text": ""})
                for piece in pieces(answer.reasoning):
                    emit("content", "response.reasoning_summary_text.delta", **where, delta=piece)
                emit("head", "response.reasoning_summary_text.done", **where, text=answer.reasoning)
                emit("head", "response.reasoning_summary_part.done", **where,
                     part={"type": "summary_text", "text": answer.reasoning})
            emit("head", "response.output_item.done", output_index=0, item=self.reasoning_item(True))
            index = 1
        if answer.tool_name is None:
            where = {"item_id": self.ids["msg"], "output_index": index, "content_index": 0}
            emit("head", "response.output_item.added", output_index=index, item=self.message_item(False))
            emit("head", "response.content_part.added", **where, part=self.text_part(False))
            for piece in pieces(answer.text):
                emit("content", "response.output_text.delta", **where, delta=piece, logprobs=[])
            emit("head", "response.output_text.done", **where, text=answer.text, logprobs=[])
            emit("head", "response.content_part.done", **where, part=self.text_part(True))
            emit("head", "response.output_item.done", output_index=index, item=self.message_item(True))
        else:
            custom = answer.tool_kind == "custom"
            item = self.call_item(False)
            where = {"item_id": item["id"], "output_index": index}
            kind = "response.custom_tool_call_input" if custom else "response.function_call_arguments"
            emit("head", "response.output_item.added", output_index=index, item=item)
            for part in fragments(answer.arguments):
                emit("content", f"{kind}.delta", **where, delta=part)
            emit("head", f"{kind}.done", **where, **{"input" if custom else "arguments": answer.arguments})
            emit("head", "response.output_item.done", output_index=index, item=self.call_item(True))
        final = "response.incomplete" if self.status == "incomplete" else "response.completed"
        emit("tail", final, response=self.response())
        return events

    def failed_event(self, sequence_number: int) -> bytes:
        """response.failed, as the stream's event number `sequence_number` (`error_after`)."""
        return sse_event("response.failed", {"type": "response.failed", "sequence_number": sequence_number,
                                          "response": self.response("failed")})


def deleted(response_id: str) -> dict:
    """DELETE /v1/responses/{id}'s answer (developers.openai.com/api/reference/resources/responses/methods/delete)."""
    return {"id": response_id, "object": "response", "deleted": True}


def not_found(response_id: str) -> RequestError:
    """GET/DELETE of an id OpenAI does not know: 404 "No response found with id '...'." (the message clients'
    mocks of the API and llama.cpp's server reproduce)."""
    return RequestError(f"No response found with id '{response_id}'.", status=404)


def previous_not_found(response_id: str) -> RequestError:
    """A `previous_response_id` OpenAI does not know: 400, code previous_response_not_found, param
    previous_response_id (the code clients such as Codex proxies match on to resend the whole history)."""
    return RequestError(f"Previous response with id '{response_id}' not found.", param="previous_response_id",
                        code="previous_response_not_found")

