"""OpenAI chat -> Gemini generateContent request, and OpenAI embeddings -> Vertex :predict request."""

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter
from tests.unit.translate_gemini_helpers import USER, WEATHER_TOOL, convert
from workers.translate.gemini_embeddings import embeddings_request_to_predict


def refused(exc_type, **body) -> str:
    with pytest.raises(exc_type) as info:
        convert(**body)
    return info.value.param


# --- request: basics -----------------------------------------------------------------------------


def test_minimal_request_drops_model_stream_and_user():
    out = convert(stream=True, stream_options={"include_usage": True}, user="u-1")
    assert out == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_system_and_developer_become_system_instruction():
    out = convert(messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
        USER,
        {"role": "assistant", "content": "salut"},
        {"role": "user", "content": "encore"},
    ])
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    assert out["contents"][1]["parts"] == [{"text": "salut"}]


def test_generation_config_mapping():
    out = convert(temperature=1.5, top_p=0.9, max_tokens=50, stop="END", n=1, seed=7,
                  presence_penalty=0.5, frequency_penalty=-0.5)
    assert out["generationConfig"] == {
        "temperature": 1.5, "topP": 0.9, "maxOutputTokens": 50, "stopSequences": ["END"], "candidateCount": 1,
        "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": -0.5}
    assert convert(max_completion_tokens=60)["generationConfig"] == {"maxOutputTokens": 60}
    assert convert(stop=["a", "b"])["generationConfig"] == {"stopSequences": ["a", "b"]}
    assert "generationConfig" not in convert(stop=[])


def test_generation_config_validation():
    assert refused(InvalidRequest, max_tokens=70, max_completion_tokens=80) == "max_completion_tokens"
    assert refused(InvalidRequest, max_tokens=0) == "max_tokens"
    assert refused(InvalidRequest, temperature="hot") == "temperature"
    assert refused(InvalidRequest, stop=[1]) == "stop"
    assert refused(InvalidRequest, seed=1.5) == "seed"


def test_response_format():
    assert "generationConfig" not in convert(response_format={"type": "text"})
    assert convert(response_format={"type": "json_object"})["generationConfig"] == {
        "responseMimeType": "application/json"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = convert(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert out["generationConfig"] == {"responseMimeType": "application/json", "responseSchema": schema}
    assert refused(InvalidRequest, response_format={"type": "json_schema", "json_schema": {"name": "x"}}) == (
        "response_format.json_schema.schema")
    assert refused(UnsupportedParameter, response_format={"type": "grammar"}) == "response_format"


@pytest.mark.parametrize("body, param", [
    ({"n": 2}, "n"),
    ({"n": True}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ({"metadata": {"a": "b"}}, "metadata"),
    ({"service_tier": "flex"}, "service_tier"),
])
def test_refusals_name_the_parameter(body, param):
    with pytest.raises(UnsupportedParameter) as info:
        convert(**body)
    assert info.value.param == param
    assert info.value.status == 400
    assert "Gemini" in info.value.message


def test_harmless_values_are_accepted():
    out = convert(logprobs=False, parallel_tool_calls=True, metadata=None, top_logprobs=None)
    assert out == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


# --- request: content parts ----------------------------------------------------------------------


def test_images():
    out = convert(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=2", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/dog.PNG"}},
    ]}])
    assert out["contents"][0]["parts"] == [
        {"text": "what is this"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/dog.PNG"}},
    ]


def test_bad_content_parts():
    bad_data = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xyz"}}]}]
    assert refused(InvalidRequest, messages=bad_data) == "messages[0].content[0].image_url.url"
    ftp = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]
    assert refused(UnsupportedParameter, messages=ftp) == "messages[0].content[0].image_url.url"
    audio = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
    assert refused(UnsupportedParameter, messages=audio) == "messages[0].content[0].type"
    system_image = [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]},
                    USER]
    assert refused(UnsupportedParameter, messages=system_image) == "messages[0].content[0].type"


def test_bad_messages():
    assert refused(InvalidRequest, messages=[]) == "messages"
    assert refused(InvalidRequest, messages=[{"role": "robot", "content": "x"}]) == "messages[0].role"
    assert refused(InvalidRequest, messages=[{"role": "user", "content": ""}]) == "messages[0].content"
    assert refused(InvalidRequest, messages=[{"role": "system", "content": "only system"}]) == "messages"
    assert refused(UnsupportedParameter, messages=[{"role": "user", "content": "x", "name": "bob"}]) == (
        "messages[0].name")
    assert refused(UnsupportedParameter, messages=[{"role": "user", "content": "x", "audio": {"id": "a"}}]) == (
        "messages[0].audio")


# --- request: tools ------------------------------------------------------------------------------


def test_tools_and_tool_choice():
    out = convert(tools=[WEATHER_TOOL, {"type": "function", "function": {"name": "now"}}], tool_choice="auto")
    assert out["tools"] == [{"functionDeclarations": [
        {"name": "get_weather", "description": "Weather for a city",
         "parameters": WEATHER_TOOL["function"]["parameters"]},
        {"name": "now"},
    ]}]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert convert(tool_choice="none")["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    assert convert(tool_choice="required")["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    named = convert(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert named["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert "tools" not in convert(tools=[])


def test_tool_refusals():
    assert refused(UnsupportedParameter, tools=[{"type": "code_interpreter"}]) == "tools[0].type"
    strict = {"type": "function", "function": {"name": "f", "strict": True}}
    assert refused(UnsupportedParameter, tools=[strict]) == "tools[0].function.strict"
    assert refused(InvalidRequest, tools=[{"type": "function", "function": {}}]) == "tools[0].function.name"
    assert refused(InvalidRequest, tool_choice="sometimes") == "tool_choice"
    assert refused(UnsupportedParameter, tool_choice={"type": "custom"}) == "tool_choice"


def tool_conversation():
    return [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "sunny"}]},
        {"role": "user", "content": "thanks"},
    ]


def test_tool_history():
    out = convert(messages=tool_conversation(), tools=[WEATHER_TOOL])
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
        {"role": "model", "parts": [  # the empty text is dropped: Gemini rejects empty text parts
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {}}},
        ]},
        {"role": "user", "parts": [  # consecutive results in one content, each named by its call's id
            {"functionResponse": {"name": "get_time", "response": {"content": "noon"}}},
            {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}},
        ]},
        {"role": "user", "parts": [{"text": "thanks"}]},
    ]


def test_tool_history_errors():
    unknown = [USER, {"role": "tool", "tool_call_id": "call_zzz", "content": "x"}]
    assert refused(InvalidRequest, messages=unknown) == "messages[1].tool_call_id"
    bad_args = [USER, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}]}]
    assert refused(InvalidRequest, messages=bad_args) == "messages[1].tool_calls[0].function.arguments"
    user_calls = [{"role": "user", "content": "x", "tool_calls": []}]
    assert refused(InvalidRequest, messages=user_calls) == "messages[0].tool_calls"


# --- embeddings request --------------------------------------------------------------------------


def test_embeddings_request():
    assert embeddings_request_to_predict({"model": "e", "input": "hello"}) == {"instances": [{"content": "hello"}]}
    out = embeddings_request_to_predict({"model": "e", "input": ["a", "b"], "dimensions": 256,
                                         "encoding_format": "float", "user": "u"})
    assert out == {"instances": [{"content": "a"}, {"content": "b"}], "parameters": {"outputDimensionality": 256}}


@pytest.mark.parametrize("body, exc_type, param", [
    ({"input": [1, 2, 3]}, UnsupportedParameter, "input"),
    ({"input": [[1, 2], [3]]}, UnsupportedParameter, "input"),
    ({"input": "x", "encoding_format": "base64"}, UnsupportedParameter, "encoding_format"),
    ({"input": "x", "task": "query"}, UnsupportedParameter, "task"),
    ({"input": []}, InvalidRequest, "input"),
    ({"input": None}, InvalidRequest, "input"),
    ({"input": "x", "dimensions": 0}, InvalidRequest, "dimensions"),
])
def test_embeddings_refusals(body, exc_type, param):
    with pytest.raises(exc_type) as info:
        embeddings_request_to_predict({"model": "e", **body})
    assert info.value.param == param
