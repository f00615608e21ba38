"""Chat pivot stream -> OpenAI Responses stream events (responses_stream), read back by the official SDK."""

import json
import re

import httpx2 as httpx  # the HTTP client these SDK versions are built on
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from shared.errors import DeadlineExceeded, InvalidRequest, UpstreamError, UpstreamRateLimited
from shared.sse import ANTHROPIC, frame
from tests.unit.responses_fixtures import PATCH, REDACTED, SIGNED, chat_answer, codex_request
from workers.providers.openai import OpenAIStream
from workers.translate.responses_items import unseal
from workers.translate.responses_request import responses_request_to_chat
from workers.translate.responses_response import chat_response_to_response
from workers.translate.responses_stream import (
    ChatStreamToResponses,
    ResponsesOverChat,
    failure_event,
    response_error,
)

EVENTS = TypeAdapter(ResponseStreamEvent)
USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
         "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 12}}


def request(body=None):
    return responses_request_to_chat(body or codex_request(), upstream_model="up", drop={"tools.web_search"})


def translator(body=None):
    return ChatStreamToResponses(request(body), response_id="resp_job7", created_at=1700000000,
                                 requested_model="claude-sonnet")


def chunk(delta=None, finish_reason=None, usage=None, choices=True):
    out = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "claude-sonnet",
           "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}]
           if choices else []}
    if usage is not None:
        out["usage"] = usage
    return out


def call(index, arguments, call_id=None, name=None):
    piece = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        piece.update(id=call_id, type="function")
        piece["function"]["name"] = name
    return chunk({"tool_calls": [piece]})


def run(chunks, stream=None):
    stream = stream or translator()
    events = [event for c in chunks for event in stream.feed(c)]
    return stream, events + stream.finish()


def names(events):
    return [name for name, _ in events]


def checked(events):
    """Every event parses as the SDK's ResponseStreamEvent, with sequence numbers 0, 1, 2, ..."""
    for n, (name, data) in enumerate(events):
        assert data["type"] == name and data["sequence_number"] == n
        EVENTS.validate_python(data)
    # Output indexes follow the output, and each item's events name its index and id.
    added = [(d["output_index"], d["item"]["id"]) for name, d in events if name == "response.output_item.added"]
    done = [(d["output_index"], d["item"]["id"]) for name, d in events if name == "response.output_item.done"]
    assert [index for index, _ in added] == list(range(len(added)))
    assert done == added if names(events)[-1] != "response.failed" else done == added[:len(done)]
    return events


def sdk_final_response(events, body=None):
    """What ``client.responses.stream(...).get_final_response()`` makes of the events."""
    wire = b"".join(frame(ANTHROPIC, data, name) for name, data in events)  # event: + data: lines, as OpenAI
    transport = httpx.MockTransport(lambda r: httpx.Response(200, headers={"content-type": "text/event-stream"},
                                                             content=wire))
    client = openai.OpenAI(api_key="k", base_url="http://gateway.test/v1",
                           http_client=httpx.Client(transport=transport))
    body = body or codex_request()
    with client.responses.stream(model=body["model"], input=body["input"], tools=body.get("tools", [])) as stream:
        seen = [event.type for event in stream]
        return stream.get_final_response(), seen


TEXT = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk(finish_reason="stop"), chunk(usage=USAGE, choices=False)]


def test_text_stream_is_the_exact_event_sequence():
    stream, events = run(TEXT)
    checked(events)
    assert names(events) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    created = events[0][1]["response"]
    assert (created["id"], created["status"], created["output"], created["usage"]) == (
        "resp_job7", "in_progress", [], None)
    assert events[2][1]["item"] == {"id": "msg_job7_0", "type": "message", "status": "in_progress",
                                    "role": "assistant", "content": []}
    assert events[4][1] == {"type": "response.output_text.delta", "item_id": "msg_job7_0", "output_index": 0,
                            "content_index": 0, "delta": "Hel", "logprobs": [], "sequence_number": 4}
    assert events[6][1]["text"] == "Hello"
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed" and completed["output"][0]["content"][0]["text"] == "Hello"
    assert completed["usage"]["output_tokens_details"] == {"reasoning_tokens": 12}
    assert completed["usage"]["input_tokens_details"]["cached_tokens"] == 100
    assert Response.model_validate(completed).output_text == "Hello"
    assert stream.usage == USAGE  # the chat usage, for the gateway's own accounting
    assert stream.finish() == [] and stream.feed(chunk({"content": "late"})) == []


def test_the_sdk_accumulates_the_same_answer_as_the_whole_translation():
    calls = [{"id": "call_a", "type": "function", "function": {"name": "mcp__docs__search",
                                                               "arguments": '{"query": "notes"}'}},
             {"id": "call_b", "type": "function", "function": {"name": "apply_patch",
                                                               "arguments": json.dumps({"input": PATCH})}}]
    message = {"content": "Looking.", "reasoning_content": SIGNED["thinking"], "thinking_blocks": [SIGNED],
               "tool_calls": calls}
    whole = chat_response_to_response(chat_answer(message, "tool_calls", USAGE), request(), response_id="resp_job7",
                                      created_at=1700000000, requested_model="claude-sonnet")
    args_a, args_b = calls[0]["function"]["arguments"], calls[1]["function"]["arguments"]
    chunks = [chunk({"role": "assistant", "content": ""}),
              chunk({"reasoning_content": "I should create "}),
              chunk({"reasoning_content": "the file with the shell."}),
              chunk({"thinking_blocks": [SIGNED]}),
              chunk({"content": "Look"}), chunk({"content": "ing."}),
              call(0, "", "call_a", "mcp__docs__search"), call(0, args_a[:7]), call(0, args_a[7:]),
              call(1, args_b[:10], "call_b", "apply_patch"), call(1, args_b[10:]),
              chunk(finish_reason="tool_calls"), chunk(usage=USAGE, choices=False)]
    _, events = run(chunks)
    checked(events)
    completed = events[-1][1]["response"]
    assert completed["output"] == whole["output"]
    assert {k: v for k, v in completed.items() if k != "completed_at"} == {
        k: v for k, v in whole.items() if k != "completed_at"}
    final, seen = sdk_final_response(events)
    assert final.output[0].type == "reasoning" and unseal(final.output[0].encrypted_content) == [SIGNED]
    assert final.output_text == "Looking."
    assert (final.output[2].name, final.output[2].namespace, final.output[2].arguments) == (
        "search", "mcp__docs", '{"query": "notes"}')
    assert (final.output[3].type, final.output[3].input) == ("custom_tool_call", PATCH)
    assert final.usage.output_tokens_details.reasoning_tokens == 12
    assert "response.reasoning_summary_text.delta" in seen and "response.function_call_arguments.delta" in seen


def test_reasoning_tool_call_events_in_codex_order():
    chunks = [chunk({"reasoning_content": "Plan."}), chunk({"thinking_blocks": [SIGNED]}),
              call(0, '{"command"', "call_a", "shell_command"), call(0, ':"ls"}'),
              call(1, '{"input": "*** Begin', "call_b", "apply_patch"), call(1, ' Patch"}'),
              chunk(finish_reason="tool_calls", usage=USAGE)]
    _, events = run(chunks)
    checked(events)
    assert names(events) == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.output_item.done", "response.completed"]
    done = {data["item"]["type"]: data["item"] for name, data in events if name == "response.output_item.done"}
    # What Codex parses from output_item.done (codex-rs protocol/src/models.rs ResponseItem).
    assert done["reasoning"]["summary"] == [{"type": "summary_text", "text": "Plan."}]
    assert unseal(done["reasoning"]["encrypted_content"]) == [SIGNED]
    assert (done["function_call"]["call_id"], done["function_call"]["name"], done["function_call"]["arguments"]) == (
        "call_a", "shell_command", '{"command":"ls"}')
    assert (done["custom_tool_call"]["call_id"], done["custom_tool_call"]["input"]) == ("call_b", "*** Begin Patch")
    added = [data["item"] for name, data in events if name == "response.output_item.added"]
    assert added[1]["arguments"] == "" and added[2]["input"] == ""


def test_redacted_thinking_alone_is_a_reasoning_item_without_summary():
    _, events = run([chunk({"thinking_blocks": [REDACTED]}), chunk({"content": "Hi"}), chunk(finish_reason="stop")])
    checked(events)
    assert names(events)[2:4] == ["response.output_item.added", "response.output_item.done"]
    item = events[3][1]["item"]
    assert item["summary"] == [] and unseal(item["encrypted_content"]) == [REDACTED]


def test_refusal_streams_as_a_refusal_part():
    _, events = run([chunk({"content": "I "}), chunk({"refusal": "can't."}), chunk(finish_reason="stop")])
    checked(events)
    assert "response.refusal.delta" in names(events) and "response.refusal.done" in names(events)
    message = events[-1][1]["response"]["output"][0]
    assert message["content"] == [{"type": "output_text", "text": "I ", "annotations": [], "logprobs": []},
                                  {"type": "refusal", "refusal": "can't."}]


def test_completion_waits_for_the_usage_chunk_or_the_end():
    stream = translator()
    stream.feed(chunk({"content": "Hi"}))
    held = stream.feed(chunk(finish_reason="stop"))
    assert names(held)[-1] == "response.output_item.done"  # items close; completion waits for usage
    released = stream.feed(chunk(usage=USAGE, choices=False))
    assert names(released) == ["response.completed"] and released[0][1]["response"]["usage"]["input_tokens"] == 120
    stream = translator()
    stream.feed(chunk({"content": "Hi"}))
    stream.feed(chunk(finish_reason="stop"))
    end = stream.finish()
    assert names(end) == ["response.completed"] and end[0][1]["response"]["usage"]["total_tokens"] == 0
    _, empty = run([])
    assert names(empty) == ["response.created", "response.in_progress", "response.completed"]


def test_a_cut_off_answer_ends_incomplete():
    _, events = run([chunk({"content": "Part"}), chunk(finish_reason="length"), chunk(usage=USAGE, choices=False)])
    checked(events)
    assert names(events)[-1] == "response.incomplete"
    response = events[-1][1]["response"]
    assert (response["status"], response["incomplete_details"]) == ("incomplete", {"reason": "max_output_tokens"})
    assert response["output"][0]["status"] == "incomplete"


def test_failure_after_the_first_event_is_response_failed():
    stream = translator()
    events = stream.feed(chunk({"content": "Hi"}))
    failed = stream.fail(UpstreamError("The model provider failed to answer."))
    assert names(failed) == ["response.failed"]
    checked(events + failed)
    response = failed[0][1]["response"]
    assert (response["id"], response["status"]) == ("resp_job7", "failed")
    assert response["error"] == {"code": "server_error", "message": "The model provider failed to answer."}
    assert Response.model_validate(response).error.code == "server_error"
    assert stream.fail(UpstreamError()) == [] and stream.feed(chunk({"content": "x"})) == []
    # Before anything was sent the failure is an ordinary HTTP error; after the end there is nothing to fail.
    assert translator().fail(UpstreamError()) == []
    done, _ = run(TEXT)
    assert done.fail(UpstreamError()) == []


def test_the_sdk_reports_a_failed_stream():
    stream = translator()
    events = stream.feed(chunk({"content": "Hi"})) + stream.fail(DeadlineExceeded())
    with pytest.raises(RuntimeError, match="response.completed"):
        sdk_final_response(events)
    assert names(events)[-1] == "response.failed"


def test_error_codes_codex_understands():
    limited = response_error(UpstreamRateLimited(retry_after=2.2))
    assert limited["code"] == "rate_limit_exceeded"
    # Codex waits as long as the message says (codex-rs sse/responses.rs, try_parse_retry_after).
    assert re.search(r"(?i)try again in\s*(\d+(?:\.\d+)?)\s*(s|ms|seconds?)", limited["message"]).group(1) == "3"
    assert response_error(UpstreamRateLimited())["message"] == UpstreamRateLimited.default_message
    assert response_error(InvalidRequest("bad"))["code"] == "invalid_prompt"
    assert response_error(DeadlineExceeded())["code"] == "server_error"


def test_failure_event_without_the_request_for_the_apis_own_failures():
    name, data = failure_event(DeadlineExceeded(), None, response_id="resp_job7", created_at=1, model="claude-sonnet",
                               sequence_number=12)
    assert name == "response.failed" and data["sequence_number"] == 12
    EVENTS.validate_python(data)
    assert Response.model_validate(data["response"]).status == "failed"


def test_upstream_errors_and_interleaved_calls_raise():
    with pytest.raises(UpstreamError, match="overloaded"):
        translator().feed({"error": {"message": "overloaded"}})
    stream = translator()
    stream.feed(call(0, '{"a": ', "c0", "shell_command"))
    stream.feed(call(1, "{}", "c1", "update_plan"))
    with pytest.raises(UpstreamError, match="interleaved"):
        stream.feed(call(0, "1}"))


def test_tool_calls_without_index():
    _, events = run([chunk({"tool_calls": [{"id": "c1", "function": {"name": "shell_command", "arguments": "{}"}}]}),
                     chunk({"tool_calls": [{"id": "c2", "function": {"name": "update_plan", "arguments": '{"a'}}]}),
                     chunk({"tool_calls": [{"function": {"arguments": '": 1}'}}]}),
                     chunk(finish_reason="tool_calls")])
    items = events[-1][1]["response"]["output"]
    assert [(i["call_id"], i["name"], i["arguments"]) for i in items] == [("c1", "shell_command", "{}"),
                                                                         ("c2", "update_plan", '{"a": 1}')]


def test_over_a_providers_chat_stream():
    """The wiring's shape: a provider's chat stream (raw SSE data, as workers.endpoints feeds it) re-told."""
    stream = ResponsesOverChat(OpenAIStream("claude-sonnet", include_usage=True), translator())
    raw = [json.dumps(c) for c in TEXT] + ["[DONE]"]
    events = [event for data in raw for event in stream.feed(None, data)] + stream.finish()
    checked(events)
    assert names(events)[-1] == "response.completed" and stream.usage == USAGE
    stream = ResponsesOverChat(OpenAIStream("m", include_usage=True), translator())
    started = stream.feed(None, json.dumps(chunk({"content": "x"})))
    assert names(stream.fail(UpstreamError())) == ["response.failed"] and started


def test_reasoning_deltas_named_as_newer_vllm_names_them():
    _, events = run([chunk({"reasoning": "Think"}), chunk({"reasoning": "ing."}), chunk({"content": "Hi"}),
                     chunk(finish_reason="stop")])
    checked(events)
    assert events[-1][1]["response"]["output"][0]["summary"] == [{"type": "summary_text", "text": "Thinking."}]
