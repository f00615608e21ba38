"""Chat pivot answer -> OpenAI Responses ``Response`` (responses_response), checked with the official SDK's types."""

import json

import pytest
from openai.types.responses import Response

from tests.unit.responses_fixtures import PATCH, REDACTED, SIGNED, chat_answer, codex_request
from workers.translate.responses_items import unseal
from workers.translate.responses_request import responses_request_to_chat
from workers.translate.responses_response import chat_response_to_response

DROP_WEB = frozenset({"tools.web_search"})


def answer(message, finish_reason="stop", usage=None, request=None):
    request = request or responses_request_to_chat(codex_request(), upstream_model="up", drop=DROP_WEB)
    return chat_response_to_response(chat_answer(message, finish_reason, usage), request, response_id="resp_job42",
                                     created_at=1700000000, requested_model="claude-sonnet", completed_at=1700000003)


def test_text_answer_is_a_response_the_sdk_reads():
    out = answer({"content": "Done: notes.txt says hello."})
    parsed = Response.model_validate(out)
    assert parsed.output_text == "Done: notes.txt says hello."
    assert (parsed.id, parsed.object, parsed.status, parsed.model) == ("resp_job42", "response", "completed",
                                                                        "claude-sonnet")
    assert (out["created_at"], out["completed_at"], out["error"], out["incomplete_details"]) == (
        1700000000, 1700000003, None, None)
    assert out["output"] == [{"id": "msg_job42_0", "type": "message", "status": "completed", "role": "assistant",
                              "content": [{"type": "output_text", "text": "Done: notes.txt says hello.",
                                           "annotations": [], "logprobs": []}]}]
    assert out["usage"] == {"input_tokens": 120,
                            "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
                            "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 12},
                            "total_tokens": 150}
    # The request's settings are repeated, as OpenAI does; the hints the translation ignored too.
    assert (out["instructions"], out["parallel_tool_calls"], out["store"], out["tool_choice"]) == (
        codex_request()["instructions"], False, False, "auto")
    assert out["reasoning"] == {"effort": "medium", "summary": "auto"}
    assert out["text"] == {"format": {"type": "text"}, "verbosity": "low"}
    assert [tool["type"] for tool in out["tools"]] == ["function", "function", "custom", "namespace", "web_search"]


def test_usage_without_details_and_without_usage():
    out = answer({"content": "x"}, usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})
    assert out["usage"] == {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                            "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7}
    resp = chat_answer({"content": "x"})
    del resp["usage"]
    request = responses_request_to_chat({"model": "m", "input": "hi"}, upstream_model="up")
    out = chat_response_to_response(resp, request, response_id="resp_1", created_at=1, requested_model="m")
    assert out["usage"]["total_tokens"] == 0 and Response.model_validate(out).usage.input_tokens == 0
    assert out["completed_at"] == 1 and out["tools"] == [] and out["tool_choice"] == "auto"


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_cut_off_answers_are_incomplete(finish, reason):
    out = answer({"content": "Partial"}, finish)
    assert (out["status"], out["incomplete_details"]) == ("incomplete", {"reason": reason})
    assert out["output"][0]["status"] == "incomplete" and "completed_at" not in out
    assert Response.model_validate(out).incomplete_details.reason == reason


def test_tool_calls_come_back_as_the_clients_item_types():
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "shell_command", "arguments": '{"command":"ls"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "apply_patch",
                                                          "arguments": json.dumps({"input": PATCH})}},
        {"id": "call_c", "type": "function", "function": {"name": "mcp__docs__search", "arguments": '{"query":"x"}'}},
        {"id": "call_d", "type": "function", "function": {"name": "apply_patch", "arguments": "*** raw, not JSON"}},
        {"id": "call_e", "type": "function", "function": {"name": "invented", "arguments": "{}"}},
    ]
    out = answer({"content": "Working.", "tool_calls": calls}, "tool_calls")
    parsed = Response.model_validate(out)
    items = out["output"]
    assert [item["type"] for item in items] == ["message", "function_call", "custom_tool_call", "function_call",
                                                "custom_tool_call", "function_call"]
    assert items[1] == {"id": "fc_job42_1", "type": "function_call", "status": "completed", "call_id": "call_a",
                        "name": "shell_command", "arguments": '{"command":"ls"}'}
    assert items[2] == {"id": "ctc_job42_2", "type": "custom_tool_call", "status": "completed", "call_id": "call_b",
                        "name": "apply_patch", "input": PATCH}
    # Codex dispatches a namespaced call on (namespace, name): codex-rs core/src/tools/router.rs.
    assert (items[3]["name"], items[3]["namespace"]) == ("search", "mcp__docs")
    assert items[4]["input"] == "*** raw, not JSON"  # kept as the model wrote it
    assert (items[5]["name"], "namespace" in items[5]) == ("invented", False)
    assert parsed.output[3].namespace == "mcp__docs" and parsed.output[2].input == PATCH
    assert out["status"] == "completed"


def test_thinking_becomes_a_reasoning_item_first_with_the_blocks_sealed():
    out = answer({"content": "Hi.", "reasoning_content": SIGNED["thinking"], "thinking_blocks": [SIGNED, REDACTED]})
    reasoning = out["output"][0]
    assert reasoning["type"] == "reasoning" and reasoning["id"] == "rs_job42_0"
    assert reasoning["summary"] == [{"type": "summary_text", "text": SIGNED["thinking"]}]
    assert unseal(reasoning["encrypted_content"]) == [SIGNED, REDACTED]
    assert out["output"][1]["type"] == "message"
    assert Response.model_validate(out).output[0].encrypted_content == reasoning["encrypted_content"]
    # Reasoning text without blocks (a generic server's reasoning_content) has nothing to seal.
    plain = answer({"content": "Hi.", "reasoning_content": "thought"})["output"][0]
    assert plain["summary"][0]["text"] == "thought" and "encrypted_content" not in plain


def test_refusal_and_empty_answers():
    out = answer({"content": None, "refusal": "I can't help with that."})
    assert out["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    assert Response.model_validate(out).output[0].content[0].refusal == "I can't help with that."
    assert answer({"content": ""})["output"] == []


def test_round_trip_the_answer_is_the_next_requests_history():
    """Codex sends the output items back as input on the next turn (with store: false): the pivot then
    holds the same calls under the same names, and the same signed thinking."""
    calls = [{"id": "call_c", "type": "function", "function": {"name": "mcp__docs__search", "arguments": "{}"}},
             {"id": "call_b", "type": "function", "function": {"name": "apply_patch",
                                                               "arguments": json.dumps({"input": PATCH})}}]
    message = {"content": "Looking.", "reasoning_content": SIGNED["thinking"], "thinking_blocks": [SIGNED],
               "tool_calls": calls}
    out = answer(message, "tool_calls")
    history = [*codex_request()["input"], *out["output"],
               {"type": "function_call_output", "call_id": "call_c", "output": "hits"},
               {"type": "custom_tool_call_output", "call_id": "call_b", "output": "Success."}]
    again = responses_request_to_chat(codex_request(input=history), upstream_model="up", drop=DROP_WEB)
    turn = again.body["messages"][-3]
    assert turn["thinking_blocks"] == [SIGNED] and turn["content"] == "Looking."
    assert turn["tool_calls"] == [
        {"id": "call_c", "type": "function", "function": {"name": "mcp__docs__search", "arguments": "{}"}},
        {"id": "call_b", "type": "function", "function": {"name": "apply_patch",
                                                          "arguments": json.dumps({"input": PATCH},
                                                                                  ensure_ascii=False)}}]
    assert [m["role"] for m in again.body["messages"][-2:]] == ["tool", "tool"]


def test_reasoning_named_as_newer_vllm_names_it():
    out = answer({"content": "Hi.", "reasoning": "Greeting back."})
    assert out["output"][0]["summary"] == [{"type": "summary_text", "text": "Greeting back."}]
