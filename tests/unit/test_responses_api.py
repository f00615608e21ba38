"""The Responses API's parts that need no running gateway: the request check, the passed-through
stream's relay, the API's record of a relayed stream (what its ``response.failed`` names) and the
store of responses (on a real Redis: the ``client`` fixture)."""

from __future__ import annotations

import orjson
import pytest

from api.validation import validate_responses
from shared.errors import DeadlineExceeded, InvalidRequest, UnsupportedParameter, UpstreamError, UpstreamRateLimited
from shared.keys import response_key
from shared.responses_store import RELAYED, STORED, ResponseRecord, ResponsesStore, owner_of
from shared.sse import RESPONSES, ResponsesTail, SSEParser, error_event, frame
from workers.providers.openai import ResponsesRelay

# -- the request check --------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("background", True), ("conversation", "conv_1"),
                                          ("conversation", {"id": "conv_1"}), ("prompt", {"id": "pmpt_1"}),
                                          ("prompt", False)])
def test_state_the_gateway_does_not_keep_is_refused_naming_it(field, value) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        validate_responses({"model": "m", "input": "hi", field: value})
    assert refused.value.param == field


def test_what_the_gateway_needs_is_checked_and_the_rest_left_to_the_provider() -> None:
    body = {"model": "m", "input": [{"type": "additional_tools", "tools": []}], "background": False,
            "store": False, "previous_response_id": "resp_1", "max_output_tokens": 64, "stream": True,
            "anything": {"else": 1}}
    assert validate_responses(body) is body
    for bad, param in (({"input": 3}, "input"), ({"previous_response_id": ""}, "previous_response_id"),
                       ({"previous_response_id": 7}, "previous_response_id"), ({"store": "no"}, "store"),
                       ({"max_output_tokens": 0}, "max_output_tokens"), ({"stream": "yes"}, "stream"),
                       ({"model": ""}, "model")):
        with pytest.raises(InvalidRequest) as refused:
            validate_responses({"model": "m", "input": "hi", **bad})
        assert refused.value.param == param


# -- a passed-through stream ---------------------------------------------------------------------------

def created(response_id: str = "resp_up1", model: str = "gpt-upstream") -> str:
    return orjson.dumps({"type": "response.created", "sequence_number": 0,
                         "response": {"id": response_id, "model": model, "status": "in_progress"}}).decode()


def test_the_relay_passes_content_events_as_they_came_and_names_the_requested_model() -> None:
    seen = []
    relay = ResponsesRelay("gpt", on_created=seen.append)
    delta = '{"type":"response.output_text.delta","delta":"hi",  "sequence_number":1,"unknown":[1]}'
    completed = orjson.dumps({"type": "response.completed", "sequence_number": 2, "response": {
        "id": "resp_up1", "model": "gpt-upstream", "usage": {"input_tokens": 3, "output_tokens": 1}}}).decode()
    out = relay.feed("response.created", created()) + relay.feed("response.output_text.delta", delta)
    out += relay.feed("response.completed", completed)
    relay.finish()
    assert seen == ["resp_up1"]
    assert out[1] == ("response.output_text.delta", delta)  # untouched, spacing and unknown fields included
    assert [orjson.loads(data)["response"]["model"] for name, data in out if name != "response.output_text.delta"] \
        == ["gpt", "gpt"]
    assert relay.usage == {"input_tokens": 3, "output_tokens": 1}


def test_the_relay_reads_the_event_name_from_the_data_when_none_is_sent() -> None:
    relay = ResponsesRelay("gpt")
    assert relay.feed(None, created())[0][0] == "response.created"


def test_an_error_event_or_a_stream_that_stops_short_is_a_failure() -> None:
    with pytest.raises(UpstreamError, match="overloaded"):
        ResponsesRelay("gpt").feed("error", '{"type":"error","message":"overloaded","sequence_number":3}')
    relay = ResponsesRelay("gpt")
    relay.feed("response.created", created())
    with pytest.raises(UpstreamError):
        relay.finish()
    with pytest.raises(UpstreamError):
        ResponsesRelay("gpt").feed("response.created", "not json")


# -- the API's end of a failed stream ------------------------------------------------------------------

def parsed(chunk: bytes) -> tuple[str, dict]:
    [(name, data)] = SSEParser().feed(chunk)
    return name, orjson.loads(data)


def test_the_api_ends_a_relayed_stream_with_response_failed_naming_its_response() -> None:
    tail = ResponsesTail()
    tail.relayed(frame(RESPONSES, created("resp_abc", "gpt"), "response.created"))
    tail.relayed(frame(RESPONSES, {"type": "response.in_progress", "sequence_number": 1}) +
                 frame(RESPONSES, {"type": "response.output_text.delta", "sequence_number": 2}))
    name, data = parsed(error_event(RESPONSES, DeadlineExceeded(), tail))
    assert name == "response.failed" and data["type"] == "response.failed"
    assert data["sequence_number"] == 3
    assert data["response"]["id"] == "resp_abc" and data["response"]["model"] == "gpt"
    assert data["response"]["status"] == "failed" and data["response"]["error"]["code"] == "server_error"
    assert error_event(RESPONSES, DeadlineExceeded(), tail) == b""  # once only


def test_nothing_follows_an_event_that_ended_the_stream() -> None:
    for last in ("response.completed", "response.incomplete", "response.failed"):
        tail = ResponsesTail()
        tail.relayed(frame(RESPONSES, created(), "response.created"))
        tail.relayed(frame(RESPONSES, {"type": last, "sequence_number": 1}))
        assert tail.failure(UpstreamError()) == b""
    tail = ResponsesTail()
    tail.relayed(frame(RESPONSES, {"type": "response.completed"}) + frame(RESPONSES, {"type": "response.x"}))
    assert tail.failure(UpstreamError()) != b""  # the last event of a chunk is the one that counts


def test_a_rate_limit_tells_codex_when_to_try_again() -> None:
    tail = ResponsesTail()
    tail.relayed(frame(RESPONSES, created(), "response.created"))
    error = parsed(tail.failure(UpstreamRateLimited("Slow down.", retry_after=2.5)))[1]["response"]["error"]
    assert error == {"code": "rate_limit_exceeded", "message": "Slow down. Please try again in 3s."}


# -- the store -----------------------------------------------------------------------------------------

def store(client, **options) -> ResponsesStore:
    return ResponsesStore(client, ttl=options.get("ttl", 60), max_bytes=options.get("max_bytes", 4096))


def test_a_kept_response_is_its_owner_s_alone(client) -> None:
    responses = store(client)
    record = ResponseRecord("2", "claude", "claude-sonnet", STORED)
    items = [{"type": "message", "role": "user", "content": "hi"}]
    assert responses.keep("resp_1", record, {"id": "resp_1"}, items)
    kept = responses.load("resp_1", "2")
    assert kept.record == record and kept.response == {"id": "resp_1"} and kept.items == items
    assert responses.record("resp_1", "2") == record
    for stranger in ("3", "", "2 "):
        assert responses.record("resp_1", stranger) is None and responses.load("resp_1", stranger) is None
    assert 0 < client.ttl(response_key("resp_1")) <= 60
    responses.forget("resp_1")
    assert responses.record("resp_1", "2") is None


def test_a_relayed_response_notes_its_owner_only(client) -> None:
    responses = store(client)
    record = ResponseRecord("2", "gpt", "gpt", RELAYED)
    responses.note_relayed("resp_up", record)
    assert responses.record("resp_up", "2") == record
    assert responses.load("resp_up", "2") is None  # nothing of it is kept here
    assert set(client.hgetall(response_key("resp_up"))) == {b"owner", b"model", b"requested", b"kind"}


def test_a_response_over_the_size_limit_is_not_kept(client) -> None:
    responses = store(client, max_bytes=1024)
    record = ResponseRecord("2", "claude", "claude", STORED)
    assert not responses.keep("resp_big", record, {"id": "resp_big"}, [{"text": "x" * 2000}])
    assert client.exists(response_key("resp_big")) == 0


def test_an_id_is_a_key_part_however_it_is_written(client) -> None:
    responses = store(client)
    responses.note_relayed("resp:1*", ResponseRecord("2", "gpt", "gpt", RELAYED))
    assert client.keys("aigw:response:*") == [b"aigw:response:resp%3A1%2A"]
    assert responses.record("resp:1*", "2") is not None and responses.record("resp", "2") is None


def test_the_owner_is_the_gitlab_user_id() -> None:
    assert owner_of({"user_id": 42, "username": "alice"}) == "42"
    assert owner_of({}) == ""  # nobody: owns nothing (record() never matches an empty owner)


def test_an_event_a_provider_spread_over_several_data_lines_is_relayed_whole() -> None:
    spread = '{"type": "response.output_text.delta",\n "delta": "hi"}'
    [(name, data)] = SSEParser().feed(frame(RESPONSES, spread, "response.output_text.delta"))
    assert name == "response.output_text.delta" and data == spread
