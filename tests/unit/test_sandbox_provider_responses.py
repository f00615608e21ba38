"""The sandbox provider's OpenAI Responses API over real HTTP: the Response object, the exact event sequence
of a stream, the official SDK parsing both, stored responses and `previous_response_id`, and passthrough.

The sequences below are OpenAI's, as its API reference lists the streaming events
(developers.openai.com/api/reference/resources/responses/streaming-events) and its SDK's stream helper
accumulates them (openai-python src/openai/lib/streaming/responses/_responses.py, which refuses an event
for an item not yet added, a duplicate output index, or an item whose identity changes).
"""

from __future__ import annotations

import json
import uuid

import openai
import pytest
import requests

from tests.unit.sandbox_fixtures import SECRET, post_stream, sse, streams

FUNCTION = {"type": "function", "name": "shell", "parameters": {"type": "object"}, "strict": False}
CUSTOM = {"type": "custom", "name": "apply_patch", "description": "a patch", "format": {"type": "text"}}
NAMESPACE = {"type": "namespace", "name": "crm", "description": "customers",
             "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]}
TOOLS = [FUNCTION, CUSTOM, NAMESPACE, {"type": "web_search"}]

OPEN = ["response.created", "response.in_progress"]
MESSAGE_OPEN = ["response.output_item.added", "response.content_part.added"]
MESSAGE_CLOSE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


def message_sequence(words: int) -> list[str]:
    return [*OPEN, *MESSAGE_OPEN, *["response.output_text.delta"] * words, *MESSAGE_CLOSE, "response.completed"]


def reasoning_sequence(words: int | None) -> list[str]:
    """A reasoning item: with a summary of `words` words, or (None) without one."""
    summary = [] if words is None else [
        "response.reasoning_summary_part.added", *["response.reasoning_summary_text.delta"] * words,
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done"]
    return ["response.output_item.added", *summary, "response.output_item.done"]


def create(base, headers=None, **body):
    return requests.post(f"{base}/v1/responses", json={"model": "gpt-test", **body}, headers=headers, timeout=10)


def stream_events(base, headers=None, **body) -> list[dict]:
    r, _ = post_stream(base, "/v1/responses", {"model": "gpt-test", "stream": True, **body}, headers=headers)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
    events = sse(r)
    assert all(name == data["type"] for name, data in events)  # the SSE event name is the data's type
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    return [data for _, data in events]


def client(base) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="k", max_retries=0)


# --- whole answers ---

def test_a_whole_response(base):
    r = create(base, input="hello  there", instructions="be brief please", tools=[FUNCTION])
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    data = r.json()
    assert data["id"].startswith("resp_sbx_") and data["object"] == "response"
    assert data["status"] == "completed" and data["completed_at"] == data["created_at"]
    assert data["error"] is None and data["incomplete_details"] is None
    assert data["model"] == "gpt-test" and data["instructions"] == "be brief please" and data["tools"] == [FUNCTION]
    assert data["store"] is True and data["parallel_tool_calls"] is True and data["tool_choice"] == "auto"
    [item] = data["output"]
    assert item == {"id": item["id"], "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "annotations": [], "logprobs": [],
                                 "text": "Sandbox reply: hello there"}]}
    assert item["id"].startswith("msg_sbx_")
    assert data["usage"] == {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                             "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0},
                             "total_tokens": 9}
    assert create(base, input="hello  there").json()["id"] != data["id"]  # every response has its own id


def test_the_sdk_parses_whole_responses(base):
    done = client(base).responses.create(model="gpt-test", input=[
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "what is up"},
                                                        {"type": "input_image", "image_url": "data:x"}]}])
    assert done.output_text == "Sandbox reply: what is up" and done.status == "completed"
    assert done.usage.input_tokens == 4 and done.usage.output_tokens_details.reasoning_tokens == 0


def test_reasoning_items_when_asked(base):
    data = create(base, input="think hard", reasoning={"effort": "high", "summary": "auto"}).json()
    reasoning, message = data["output"]
    assert reasoning == {"id": reasoning["id"], "type": "reasoning",
                         "encrypted_content": reasoning["encrypted_content"],
                         "summary": [{"type": "summary_text", "text": "Sandbox reasoning (high): think hard"}]}
    assert reasoning["id"].startswith("rs_sbx_") and reasoning["encrypted_content"]
    assert message["content"][0]["text"] == "Sandbox reply: think hard"
    assert data["usage"]["output_tokens_details"] == {"reasoning_tokens": 5}
    assert data["usage"]["output_tokens"] == 4 + 5 and data["reasoning"] == {"effort": "high", "summary": "auto"}
    # no summary asked for: the item has none, as OpenAI's; the model still reasons
    quiet = create(base, input="think hard", reasoning={"effort": "low"}).json()
    assert quiet["output"][0]["summary"] == [] and quiet["usage"]["output_tokens_details"]["reasoning_tokens"] == 5
    for no in ({"effort": "none", "summary": "auto"}, {"summary": "auto"}, None):
        answer = create(base, input="think hard", reasoning=no).json()
        assert [i["type"] for i in answer["output"]] == ["message"]
        assert answer["usage"]["output_tokens_details"]["reasoning_tokens"] == 0


def test_max_output_tokens(base):
    r = create(base, input="x", max_output_tokens=15)
    assert r.status_code == 400 and r.json() == {"error": {
        "message": "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 15 "
                   "instead.", "type": "invalid_request_error", "param": "max_output_tokens",
        "code": "integer_below_min_value"}}
    assert create(base, input="x", max_output_tokens="20").json()["error"]["param"] == "max_output_tokens"
    data = create(base, input="[[sandbox words=40]] many words", max_output_tokens=16).json()
    assert data["status"] == "incomplete" and data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["completed_at"] is None and data["output"][0]["status"] == "incomplete"
    assert len(data["output"][0]["content"][0]["text"].split()) == 16 == data["usage"]["output_tokens"]
    events = stream_events(base, input="[[sandbox words=40]] many words", max_output_tokens=16)
    assert [e["type"] for e in events] == message_sequence(16)[:-1] + ["response.incomplete"]
    assert events[-1]["response"]["status"] == "incomplete"


def test_bad_requests_in_openai_shape(base):
    r = create(base, input={"role": "user"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert create(base, input=["text"]).status_code == 400
    assert create(base, input="x", stream="yes").status_code == 400
    r = create(base, input="x [[sandbox nope]]")
    assert r.status_code == 400 and "nope" in r.json()["error"]["message"]
    r = create(base, input="x", previous_response_id=7)
    assert r.status_code == 400 and r.json()["error"]["param"] == "previous_response_id"
    r = create(base, input="x [[sandbox fail=503 retry_after=2]]")
    assert r.status_code == 503 and r.headers["Retry-After"] == "2" and r.json()["error"]["type"] == "server_error"


# --- streams ---

def test_a_text_stream_in_openais_order(base):
    events = stream_events(base, input="one two three")
    assert [e["type"] for e in events] == message_sequence(5)
    created, in_progress = events[0]["response"], events[1]["response"]
    assert created["status"] == in_progress["status"] == "in_progress"
    assert created["output"] == [] and created["usage"] is None and created["id"] == in_progress["id"]
    added, part = events[2], events[3]
    item_id = added["item"]["id"]
    assert added["output_index"] == 0 and added["item"] == {"id": item_id, "type": "message", "status": "in_progress",
                                                            "role": "assistant", "content": []}
    assert part["part"] == {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    deltas = events[4:9]
    assert {(d["item_id"], d["output_index"], d["content_index"]) for d in deltas} == {(item_id, 0, 0)}
    assert "".join(d["delta"] for d in deltas) == "Sandbox reply: one two three" == events[9]["text"]
    assert events[10]["part"]["text"] == events[9]["text"]
    final = events[-1]["response"]
    assert events[11]["item"] == final["output"][0] and final["status"] == "completed"
    assert final["id"] == created["id"] and final["usage"]["output_tokens"] == 5


def test_a_function_call_stream(base):
    events = stream_events(base, input="ls [[sandbox tool=shell args={\"command\": [\"ls\", \"-l\"]}]]", tools=TOOLS)
    assert [e["type"] for e in events] == [
        *OPEN, "response.output_item.added", *["response.function_call_arguments.delta"] * 3,
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    added, done = events[2]["item"], events[-2]["item"]
    assert added == {**done, "status": "in_progress", "arguments": ""}
    assert done["type"] == "function_call" and done["name"] == "shell" and done["status"] == "completed"
    assert done["call_id"].startswith("call_sbx_") and done["id"].startswith("fc_sbx_")
    arguments = "".join(e["delta"] for e in events[3:6])
    assert json.loads(arguments) == {"command": ["ls", "-l"]} == json.loads(events[6]["arguments"])
    assert events[-1]["response"]["output"] == [done]


def test_a_custom_tool_call_stream(base):
    events = stream_events(base, input='[[sandbox tool=apply_patch args="*** Begin Patch\\n*** End Patch"]]',
                           tools=TOOLS)
    assert [e["type"] for e in events] == [
        *OPEN, "response.output_item.added", *["response.custom_tool_call_input.delta"] * 3,
        "response.custom_tool_call_input.done", "response.output_item.done", "response.completed"]
    done = events[-2]["item"]
    assert done["type"] == "custom_tool_call" and done["name"] == "apply_patch" and done["id"].startswith("ctc_sbx_")
    assert done["input"] == "*** Begin Patch\n*** End Patch" == events[6]["input"]
    assert "".join(e["delta"] for e in events[3:6]) == done["input"]
    # without args a custom tool gets the message text
    data = create(base, input="fix it [[sandbox tool=apply_patch]]", tools=TOOLS).json()
    assert data["output"][0]["input"] == "fix it"


def test_a_namespaced_function_call(base):
    data = create(base, input="find ann [[sandbox tool=lookup]]", tools=TOOLS).json()
    [call] = data["output"]
    assert call["type"] == "function_call" and call["name"] == "lookup" and call["namespace"] == "crm"
    assert json.loads(call["arguments"]) == {"query": "find ann"}
    # a tool the request does not define, a built-in without a name, tool_choice none: a text answer
    for extra in ({"tools": [FUNCTION]}, {"tools": TOOLS, "input": "x [[sandbox tool=web_search]]"},
                  {"tools": TOOLS, "tool_choice": "none"}):
        answer = create(base, **{"input": "find ann [[sandbox tool=lookup]]", **extra}).json()
        assert [i["type"] for i in answer["output"]] == ["message"]
    r = create(base, input="x [[sandbox tool=shell args=\"not an object\"]]", tools=TOOLS)
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]


def test_a_tool_of_an_additional_tools_item(base):
    """Codex's default models get their tools in an input item (tests/clients/TRAFFIC.md)."""
    tools = {"type": "additional_tools", "role": "developer", "tools": TOOLS}
    data = create(base, input=[tools, {"role": "user", "content": "find ann [[sandbox tool=lookup]]"}]).json()
    [call] = data["output"]
    assert call["type"] == "function_call" and call["name"] == "lookup" and call["namespace"] == "crm"


@pytest.mark.parametrize("summary", ["auto", None])
def test_a_reasoning_stream(base, summary):
    events = stream_events(base, input="a b", reasoning={"effort": "medium", "summary": summary})
    thought = "Sandbox reasoning (medium): a b"
    reasoning = reasoning_sequence(5 if summary else None)
    assert [e["type"] for e in events] == [*OPEN, *reasoning, *message_sequence(4)[2:]]
    added, done = events[2], events[len(reasoning) + 1]
    assert added["item"] == {"id": added["item"]["id"], "type": "reasoning", "summary": []}
    assert done["item"]["encrypted_content"] and done["output_index"] == 0
    message = events[len(reasoning) + 2]
    assert message["type"] == "response.output_item.added" and message["output_index"] == 1
    if summary:
        assert done["item"]["summary"] == [{"type": "summary_text", "text": thought}]
        deltas = [e for e in events if e["type"] == "response.reasoning_summary_text.delta"]
        assert "".join(d["delta"] for d in deltas) == thought and {d["summary_index"] for d in deltas} == {0}
        assert events[3]["part"] == {"type": "summary_text", "text": ""}
    final = events[-1]["response"]
    assert final["output"][0] == done["item"] and final["usage"]["output_tokens_details"]["reasoning_tokens"] == 5


def test_the_sdk_stream_helper_accumulates_every_kind(base):
    sdk = client(base)
    with sdk.responses.stream(model="gpt-test", input="stream me", reasoning={"effort": "low", "summary": "auto"}) \
            as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds == [*OPEN, *reasoning_sequence(5), *message_sequence(4)[2:]]
    assert final.output_text == "Sandbox reply: stream me" and final.output[0].type == "reasoning"
    assert final.usage.output_tokens_details.reasoning_tokens == 5
    with sdk.responses.stream(model="gpt-test", tools=TOOLS,
                              input="[[sandbox tool=apply_patch]] patch [[sandbox tool=shell]]") as stream:
        [call] = stream.get_final_response().output
    assert call.type == "function_call" and json.loads(call.arguments) == {"query": "patch"}  # the last tool= wins
    with sdk.responses.stream(model="gpt-test", tools=TOOLS, reasoning={"effort": "low", "summary": "detailed"},
                              input="[[sandbox tool=lookup]] ann") as stream:
        kinds = [event.type for event in stream]
        reasoning, call = stream.get_final_response().output
    assert kinds == [*OPEN, *reasoning_sequence(4), "response.output_item.added",
                     *["response.function_call_arguments.delta"] * 3, "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    assert reasoning.summary[0].text == "Sandbox reasoning (low): ann" and reasoning.encrypted_content
    assert call.namespace == "crm" and json.loads(call.arguments) == {"query": "ann"}
    chunks = list(sdk.responses.create(model="gpt-test", input="raw events", stream=True))
    assert [c.type for c in chunks] == message_sequence(4)
    assert chunks[-1].response.output_text == "Sandbox reply: raw events"


# --- tool round trips, stored responses ---

def test_a_round_trip_with_previous_response_id(base):
    sdk = client(base)
    first = sdk.responses.create(model="gpt-test", tools=TOOLS, input="weather in Paris [[sandbox tool=shell]]")
    [call] = first.output
    second = sdk.responses.create(model="gpt-test", tools=TOOLS, previous_response_id=first.id, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny,  21 C"}])
    assert second.output_text == "Sandbox reply: tool said sunny, 21 C"
    assert second.usage.input_tokens == 3 + 3  # the question and the tool output, carried from the first
    assert second.previous_response_id == first.id
    third = sdk.responses.create(model="gpt-test", previous_response_id=second.id, input="thanks")
    assert third.output_text == "Sandbox reply: thanks"
    assert sdk.responses.retrieve(second.id).output_text == second.output_text


def test_a_round_trip_with_the_whole_history_as_codex_sends_it(base):
    """store: false and the history in `input`, each tool output a string or a list of parts; the
    instructions Codex puts between turns are not the newest turn."""
    sdk = client(base)
    history = [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "sandboxed"}]},
               {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<env>cwd</env>"}]},
               {"type": "message", "role": "user", "content": [{"type": "input_text", "text":
                                                                 "[[sandbox tool=shell args={\"command\": "
                                                                 "[\"echo\", \"hi\"]}]] say hi"}]}]
    with sdk.responses.stream(model="gpt-test", tools=TOOLS, input=history, store=False) as stream:
        first = stream.get_final_response()
    [call] = first.output
    history += [call.model_dump(exclude_none=True),
                {"type": "function_call_output", "call_id": call.call_id,
                 "output": [{"type": "input_text", "text": "hi"}, {"type": "input_text", "text": "(exit 0)"}]},
                {"type": "message", "role": "developer", "content": "a reminder"}]
    second = sdk.responses.create(model="gpt-test", tools=TOOLS, input=history, store=False)
    assert second.output_text == "Sandbox reply: tool said hi (exit 0)"
    custom = sdk.responses.create(model="gpt-test", tools=TOOLS, store=False, input=[
        {"role": "user", "content": "[[sandbox tool=apply_patch]]"},
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "p"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done!"}])
    assert custom.output_text == "Sandbox reply: tool said Done!"
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(first.id)  # store: false keeps nothing


def test_stored_responses_get_and_delete(base):
    data = create(base, input="keep me").json()
    r = requests.get(f"{base}/v1/responses/{data['id']}", timeout=5)
    assert r.status_code == 200 and r.json() == data
    r = requests.delete(f"{base}/v1/responses/{data['id']}", timeout=5)
    assert r.status_code == 200 and r.json() == {"id": data["id"], "object": "response", "deleted": True}
    for method in (requests.get, requests.delete):
        r = method(f"{base}/v1/responses/{data['id']}", timeout=5)
        assert r.status_code == 404 and r.json() == {"error": {
            "message": f"No response found with id '{data['id']}'.", "type": "invalid_request_error",
            "param": None, "code": None}}
    r = create(base, input="again", previous_response_id=data["id"])
    assert r.status_code == 400 and r.json()["error"] == {
        "message": f"Previous response with id '{data['id']}' not found.", "type": "invalid_request_error",
        "param": "previous_response_id", "code": "previous_response_not_found"}
    with pytest.raises(openai.BadRequestError) as refused:
        client(base).responses.create(model="m", input="x", previous_response_id="resp_unknown")
    assert refused.value.code == "previous_response_not_found"
    assert requests.post(f"{base}/v1/responses/{data['id']}", json={}, timeout=5).status_code == 405
    assert requests.get(f"{base}/v1/responses/{data['id']}/input_items", timeout=5).status_code == 404
    log = requests.get(f"{base}/_sandbox/log", timeout=5).json()["requests"]
    assert [(e["method"], e["path"]) for e in log[1:5]] == [
        ("GET", f"/v1/responses/{data['id']}"), ("DELETE", f"/v1/responses/{data['id']}"),
        ("GET", f"/v1/responses/{data['id']}"), ("DELETE", f"/v1/responses/{data['id']}")]


def test_a_stream_is_stored_once_complete(base):
    final = stream_events(base, input="streamed")[-1]["response"]
    assert requests.get(f"{base}/v1/responses/{final['id']}", timeout=5).json() == final
    r, _ = post_stream(base, "/v1/responses", {"model": "m", "stream": True, "input": "a b [[sandbox fail_after=1]]"})
    lines = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in r.iter_lines(decode_unicode=True):
            lines.append(line)
    created = json.loads(lines[1][len("data: "):])
    assert created["type"] == "response.created" and [s["reason"] for s in streams(base)] == ["completed", "failed"]
    # the failed stream left nothing to retrieve or continue from
    assert requests.get(f"{base}/v1/responses/{created['response']['id']}", timeout=5).status_code == 404
    r = create(base, input="x", previous_response_id=created["response"]["id"])
    assert r.json()["error"]["code"] == "previous_response_not_found"
    requests.post(f"{base}/_sandbox/reset", timeout=5)  # a reset forgets stored responses too
    assert requests.get(f"{base}/v1/responses/{final['id']}", timeout=5).status_code == 404


# --- faults mid-stream ---

def test_error_after_ends_the_stream_with_response_failed(base):
    events = stream_events(base, input="a b c [[sandbox error_after=2]]")
    assert [e["type"] for e in events] == [*OPEN, *MESSAGE_OPEN, "response.output_text.delta",
                                           "response.output_text.delta", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["id"] == events[0]["response"]["id"]
    assert failed["error"] == {"code": "server_error", "message": "sandbox injected stream error"}
    with client(base).responses.stream(model="m", input="x [[sandbox error_after=0]]") as stream:
        kinds = [event.type for event in stream]
        with pytest.raises(RuntimeError, match="response.completed"):
            stream.get_final_response()
    assert kinds == [*OPEN, *MESSAGE_OPEN, "response.failed"]


def test_fail_after_drops_the_stream_before_response_completed(base):
    rid = f"drop-{uuid.uuid4()}"
    r, _ = post_stream(base, "/v1/responses", {"model": "m", "stream": True, "input": "x [[sandbox fail_after=9]]"},
                       headers={"X-Request-Id": rid})
    seen = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for line in r.iter_lines(decode_unicode=True):
            seen.append(line)
    kinds = [json.loads(line[6:])["type"] for line in seen if line.startswith("data: ")]
    assert kinds == message_sequence(3)[:-1]  # every item done, but no response.completed
    with pytest.raises(openai.APIConnectionError):
        list(client(base).responses.create(model="m", input="x [[sandbox fail_after=1]]", stream=True))


# --- passthrough: what Codex sends is accepted and logged untouched ---

CODEX_LIKE = {
    "model": "gpt-test", "instructions": "You are Codex.", "stream": True, "store": False,
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions>"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}],
         "encrypted_content": "opaque"},
        {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{\"command\":[\"ls\"]}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done"},
        {"type": "tool_search_call", "id": "ts_1", "arguments": {"query": "x"}, "future_field": [1]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "now what"}]},
    ],
    "tools": [FUNCTION, CUSTOM, NAMESPACE, {"type": "web_search", "external_web_access": False},
              {"type": "tool_search", "future": True}, {"type": "local_shell"}],
    "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": {"effort": "medium", "summary": "auto"},
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "0199-session", "text": {"verbosity": "low"},
    "client_metadata": {"originator": "codex_exec"}, "x_unknown_field": {"nested": [None, 1.5, "s"]},
}


def test_every_field_and_item_type_codex_sends_is_accepted_and_logged_untouched(base):
    rid = f"codex-{uuid.uuid4()}"
    events = stream_events(base, headers={"X-Request-Id": rid, "Originator": "codex_exec"}, **CODEX_LIKE)
    final = events[-1]["response"]
    assert final["output"][-1]["content"][0]["text"] == "Sandbox reply: now what"
    assert final["parallel_tool_calls"] is False and final["text"] == {"verbosity": "low"}
    assert final["prompt_cache_key"] == "0199-session" and final["store"] is False
    [entry] = requests.get(f"{base}/_sandbox/log", params={"key": rid}, timeout=5).json()["requests"]
    assert entry["body"] == CODEX_LIKE and entry["path"] == "/v1/responses" and entry["stream"] is True
    assert entry["headers"]["originator"] == "codex_exec" and entry["body_bytes"] > 0
    assert requests.get(f"{base}/_sandbox/log", params={"key": "other"}, timeout=5).json() == {"requests": []}


def test_auth_applies_to_every_responses_path(keyed):
    assert create(keyed, input="x").status_code == 401
    headers = {"Authorization": f"Bearer {SECRET}"}
    data = create(keyed, input="x", headers=headers).json()
    assert requests.get(f"{keyed}/v1/responses/{data['id']}", timeout=5).status_code == 401
    assert requests.get(f"{keyed}/v1/responses/{data['id']}", headers=headers, timeout=5).json()["id"] == data["id"]
    assert requests.delete(f"{keyed}/v1/responses/{data['id']}", timeout=5).status_code == 401
