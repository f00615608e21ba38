"""Gemini answers -> OpenAI chat: whole responses, tool calls, streams, and :predict -> embeddings."""

import json

import pytest

from tests.unit.translate_gemini_helpers import USER, WEATHER_TOOL, candidate, convert, to_chat
from workers.translate.gemini import GeminiStreamToChat
from workers.translate.gemini_embeddings import predict_response_to_embeddings

# --- response ------------------------------------------------------------------------------------


def test_text_response():
    resp = {"candidates": [candidate([{"text": "Hello "}, {"text": "world"}])],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2, "totalTokenCount": 7}}
    out = to_chat(resp, "abc")
    assert out["id"] == "chatcmpl-abc"
    assert (out["object"], out["created"], out["model"]) == ("chat.completion", 123, "alias")
    assert out["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello world", "refusal": None},
                               "logprobs": None, "finish_reason": "stop"}]
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_thought_parts_and_thinking_tokens():
    resp = {"candidates": [candidate([{"text": "pondering", "thought": True}, {"text": "42"}])],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1, "thoughtsTokenCount": 30,
                              "totalTokenCount": 36, "cachedContentTokenCount": 4}}
    out = to_chat(resp)
    assert out["choices"][0]["message"]["content"] == "42"
    assert out["usage"] == {"prompt_tokens": 5, "completion_tokens": 31, "total_tokens": 36,
                            "prompt_tokens_details": {"cached_tokens": 4},
                            "completion_tokens_details": {"reasoning_tokens": 30}}


@pytest.mark.parametrize("reason, finish", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"), ("PROHIBITED_CONTENT", "content_filter"), ("SPII", "content_filter"),
    ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop"), (None, "stop"),
])
def test_finish_reasons(reason, finish):
    assert to_chat({"candidates": [candidate([{"text": "x"}], reason)]})["choices"][0]["finish_reason"] == finish


def test_function_call_response():
    parts = [{"text": "Let me check."}, {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
             {"functionCall": {"name": "get_time", "args": {}}}]
    out = to_chat({"candidates": [candidate(parts)]}, "resp-1")
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    calls = choice["message"]["tool_calls"]
    assert [c["function"] for c in calls] == [
        {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}, {"name": "get_time", "arguments": "{}"}]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert calls[0]["id"] != calls[1]["id"]
    again = to_chat({"candidates": [candidate(parts)]}, "resp-1")["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in again] == [c["id"] for c in calls]  # deterministic
    assert to_chat({"candidates": [candidate(parts, "MAX_TOKENS")]})["choices"][0]["finish_reason"] == "length"


def test_blocked_prompt():
    out = to_chat({"promptFeedback": {"blockReason": "SAFETY"},
                   "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}})
    assert out["choices"][0]["message"]["content"] is None
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert out["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}


def test_tool_round_trip():
    """A Gemini function call, returned to OpenAI, sent back with its result, reaches Gemini by name."""
    call_msg = to_chat({"candidates": [candidate([{"functionCall": {"name": "get_weather",
                                                                    "args": {"city": "Oslo"}}}])]})
    message = call_msg["choices"][0]["message"]
    call = message["tool_calls"][0]
    messages = [{"role": "user", "content": "weather in Oslo?"}, message,
                {"role": "tool", "tool_call_id": call["id"], "content": "snow"}]
    out = convert(messages=messages, tools=[WEATHER_TOOL])
    assert out["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "snow"}}}]},
    ]


SIGNATURE = "++++////XbrFvol8KfhoSgadMcg="  # standard base64 with every character URL-safe ids avoid


def test_a_signed_call_keeps_its_thought_signature_in_its_id_and_gets_it_back():
    """Gemini 3 signs function calls and wants the signature back; clients only keep the call id."""
    signed = {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}, "thoughtSignature": SIGNATURE}
    message = to_chat({"candidates": [candidate([signed])]})["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]
    assert call_id.startswith("call_") and not set("+/=") & set(call_id)
    messages = [{"role": "user", "content": "weather in Oslo?"}, message,
                {"role": "tool", "tool_call_id": call_id, "content": "snow"}]
    assert convert(messages=messages, tools=[WEATHER_TOOL])["contents"][1] == {"role": "model", "parts": [signed]}
    streamed = GeminiStreamToChat("alias", 1, "r1", False).feed({"candidates": [candidate([signed])]})
    assert streamed[0]["choices"][0]["delta"]["tool_calls"][0]["id"] == call_id


def test_an_id_that_only_looks_signed_sends_no_signature():
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_x_thoughtsig_not*base64!", "type": "function",
         "function": {"name": "get_weather", "arguments": "{}"}}]}
    parts = convert(messages=[USER, message], tools=[WEATHER_TOOL])["contents"][1]["parts"]
    assert parts == [{"functionCall": {"name": "get_weather", "args": {}}}]


# --- streaming -----------------------------------------------------------------------------------


def stream_chunks(words, finish="STOP", usage=None):
    chunks = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        chunk = {"candidates": [candidate([{"text": word}], finish if last else None)],
                 "usageMetadata": usage if last else {"promptTokenCount": 4}}
        chunks.append(chunk)
    return chunks


def test_stream_text_concatenates_to_the_whole():
    usage = {"promptTokenCount": 4, "candidatesTokenCount": 3, "totalTokenCount": 7}
    translator = GeminiStreamToChat("alias", 99, "rid", include_usage=True)
    out = []
    for chunk in stream_chunks(["Sandbox ", "reply: ", "hello"], usage=usage):
        out += translator.feed(chunk)
    assert out[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in c["choices"][0]["delta"] for c in out[1:])
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-rid" and c["model"] == "alias"
               and c["created"] == 99 for c in out)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in out) == "Sandbox reply: hello"
    assert [c["choices"][0]["finish_reason"] for c in out] == [None, None, None, "stop"]
    assert translator.usage == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    tail = translator.finish()
    assert tail == [{"id": "chatcmpl-rid", "object": "chat.completion.chunk", "created": 99, "model": "alias",
                     "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}}]


def test_stream_without_usage_chunk():
    translator = GeminiStreamToChat("alias", 1, "rid", include_usage=False)
    for chunk in stream_chunks(["a"], usage={"promptTokenCount": 1, "candidatesTokenCount": 1}):
        translator.feed(chunk)
    assert translator.finish() == []
    assert translator.usage == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert GeminiStreamToChat("alias", 1, "rid", include_usage=False).usage is None


def test_stream_function_calls():
    translator = GeminiStreamToChat("alias", 1, "rid", include_usage=False)
    out = translator.feed({"candidates": [candidate([
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_time", "args": {}}}], "STOP")]})
    deltas = [c["choices"][0]["delta"] for c in out]
    assert deltas[0]["role"] == "assistant"
    calls = [d["tool_calls"][0] for d in deltas[:2]]
    assert [(c["index"], c["type"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "function", "get_weather", '{"city": "Paris"}'), (1, "function", "get_time", "{}")]
    expected = to_chat({"candidates": [candidate([
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
        {"functionCall": {"name": "get_time", "args": {}}}])]}, "rid")["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls] == [c["id"] for c in expected]  # same ids streamed or not
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_blocked_prompt_and_empty_chunks():
    translator = GeminiStreamToChat("alias", 1, "rid", include_usage=True)
    assert translator.feed({"usageMetadata": {"promptTokenCount": 2}}) == []
    out = translator.feed({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    assert [c["choices"][0]["finish_reason"] for c in out] == ["content_filter"]
    assert translator.finish()[0]["usage"]["prompt_tokens"] == 2


# --- embeddings response -------------------------------------------------------------------------


def test_embeddings_response():
    resp = {"predictions": [
        {"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 3, "truncated": False}}},
        {"embeddings": {"values": [0.3, 0.4], "statistics": {"token_count": 2.0}}},
    ]}
    assert predict_response_to_embeddings(resp, requested_model="alias") == {
        "object": "list", "model": "alias",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
                 {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]}],
        "usage": {"prompt_tokens": 5, "total_tokens": 5},
    }
