"""A Codex turn on an Anthropic model, through every pure translation: Responses -> chat -> Anthropic and back.

Anthropic's side is shaped as its API answers (anthropic-sdk-python types: Message with thinking,
text and tool_use blocks; the stream's content_block_* events with thinking_delta/signature_delta).
"""

import json

from openai.types.responses import Response

from tests.unit.responses_fixtures import PATCH, codex_request
from workers.providers.anthropic import ChatStream
from workers.translate.anthropic import anthropic_response_to_chat, chat_request_to_anthropic
from workers.translate.responses_request import responses_request_to_chat
from workers.translate.responses_response import chat_response_to_response
from workers.translate.responses_stream import ChatStreamToResponses, ResponsesOverChat

THINKING = {"type": "thinking", "thinking": "Search the docs, then patch.", "signature": "EqQBCkYIBxgCKkA"}
ANTHROPIC_ANSWER = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
    "content": [THINKING, {"type": "text", "text": "On it."},
                {"type": "tool_use", "id": "toolu_1", "name": "mcp__docs__search", "input": {"query": "notes"}},
                {"type": "tool_use", "id": "toolu_2", "name": "apply_patch", "input": {"input": PATCH}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 50, "cache_read_input_tokens": 900, "output_tokens": 80},
}


def to_anthropic(body):
    chat = responses_request_to_chat(body, upstream_model="claude-x", drop={"tools.web_search"},
                                     target="Anthropic models")
    return chat, chat_request_to_anthropic(chat.body, upstream_model="claude-x", default_max_tokens=4096)


def test_a_codex_turn_round_trips_through_anthropic():
    chat, _ = to_anthropic(codex_request())
    pivot = anthropic_response_to_chat(ANTHROPIC_ANSWER, requested_model="claude-sonnet", created=0)
    response = chat_response_to_response(pivot, chat, response_id="resp_j1", created_at=0,
                                         requested_model="claude-sonnet")
    Response.model_validate(response)
    items = response["output"]
    assert [item["type"] for item in items] == ["reasoning", "message", "function_call", "custom_tool_call"]
    assert (items[2]["namespace"], items[2]["name"], json.loads(items[2]["arguments"])) == (
        "mcp__docs", "search", {"query": "notes"})
    assert (items[3]["name"], items[3]["input"]) == ("apply_patch", PATCH)
    usage = response["usage"]
    assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"]) == (950, 900)

    # Codex's next request: everything so far, the output items, and the two tool outputs.
    history = [*codex_request()["input"], *items,
               {"type": "function_call_output", "call_id": "toolu_1", "output": "notes.txt: not found"},
               {"type": "custom_tool_call_output", "call_id": "toolu_2", "output": "Success."}]
    _, anthropic = to_anthropic(codex_request(input=history))
    turn, results = anthropic["messages"][-2], anthropic["messages"][-1]
    assert turn == {"role": "assistant", "content": [
        THINKING, {"type": "text", "text": "On it."},
        {"type": "tool_use", "id": "toolu_1", "name": "mcp__docs__search", "input": {"query": "notes"}},
        {"type": "tool_use", "id": "toolu_2", "name": "apply_patch", "input": {"input": PATCH}}]}
    assert [(b["type"], b["tool_use_id"]) for b in results["content"]] == [("tool_result", "toolu_1"),
                                                                            ("tool_result", "toolu_2")]


def sse(events):
    return [(name, json.dumps({"type": name, **data})) for name, data in events]


def test_a_streamed_anthropic_answer_reaches_codex_as_responses_events():
    chat, _ = to_anthropic(codex_request())
    anthropic_events = sse([
        ("message_start", {"message": {"id": "msg_01", "type": "message", "role": "assistant", "content": [],
                                       "usage": {"input_tokens": 50, "output_tokens": 1}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Search the docs, "}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "then patch."}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCkYIBxgCKkA"}}),
        ("content_block_stop", {"index": 0}),
        ("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "On it."}}),
        ("content_block_stop", {"index": 1}),
        ("content_block_start", {"index": 2, "content_block": {"type": "tool_use", "id": "toolu_2",
                                                               "name": "apply_patch", "input": {}}}),
        ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta",
                                                       "partial_json": json.dumps({"input": PATCH})[:15]}}),
        ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta",
                                                       "partial_json": json.dumps({"input": PATCH})[15:]}}),
        ("content_block_stop", {"index": 2}),
        ("message_delta", {"delta": {"stop_reason": "tool_use", "stop_sequence": None},
                           "usage": {"output_tokens": 80}}),
        ("message_stop", {}),
    ])
    stream = ResponsesOverChat(ChatStream("claude-sonnet", include_usage=True),
                               ChatStreamToResponses(chat, response_id="resp_j1", created_at=0,
                                                     requested_model="claude-sonnet"))
    events = [event for name, data in anthropic_events for event in stream.feed(name, data)] + stream.finish()
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    summary = "".join(d["delta"] for name, d in events if name == "response.reasoning_summary_text.delta")
    assert summary == THINKING["thinking"]
    completed = events[-1][1]["response"]
    assert events[-1][0] == "response.completed"
    Response.model_validate(completed)
    done = [d["item"] for name, d in events if name == "response.output_item.done"]
    assert [item["type"] for item in done] == ["reasoning", "message", "custom_tool_call"]
    assert done[2]["input"] == PATCH and completed["output"] == done
    assert completed["usage"]["input_tokens"] == 50 and completed["usage"]["output_tokens"] == 80
    assert stream.usage == {"prompt_tokens": 50, "completion_tokens": 80, "total_tokens": 130}
    # The reasoning item Codex keeps replays the same signed thinking next turn.
    _, anthropic = to_anthropic(codex_request(input=[*codex_request()["input"], *done,
                                                     {"type": "custom_tool_call_output", "call_id": "toolu_2",
                                                      "output": "Success."}]))
    assert anthropic["messages"][-2]["content"][0] == THINKING
