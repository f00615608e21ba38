"""OpenAI chat request -> Anthropic request: top-level parameters, refused fields, system and user messages.

Tools and tool calls: test_translate_anthropic_tools.py.
"""

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter
from tests.unit.translate_anthropic_helpers import USER, convert, refused

# --- request: basics ---------------------------------------------------------


def test_minimal_request():
    out = convert(model="alias", stream=True, stream_options={"include_usage": True})
    assert out == {"model": "claude-x-1", "max_tokens": 1024, "messages": [{"role": "user", "content": "hi"}]}


def test_max_tokens_sources_and_conflict():
    assert convert(max_tokens=50)["max_tokens"] == 50
    assert convert(max_completion_tokens=60)["max_tokens"] == 60
    assert convert(max_tokens=70, max_completion_tokens=70)["max_tokens"] == 70
    assert refused(InvalidRequest, max_tokens=70, max_completion_tokens=80) == "max_completion_tokens"
    assert refused(InvalidRequest, max_tokens=0) == "max_tokens"


def test_temperature_top_p_and_stop():
    out = convert(temperature=0.7, top_p=0.9, stop="END")
    assert (out["temperature"], out["top_p"], out["stop_sequences"]) == (0.7, 0.9, ["END"])
    assert convert(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert convert(temperature=1)["temperature"] == 1


def test_temperature_above_one_is_refused():
    with pytest.raises(UnsupportedParameter) as info:
        convert(temperature=1.5)
    assert info.value.param == "temperature"
    assert "0-2" in info.value.message and "0-1" in info.value.message
    assert info.value.status == 400


def test_user_becomes_metadata():
    assert convert(user="u-42")["metadata"] == {"user_id": "u-42"}


def test_none_values_are_ignored():
    out = convert(
        seed=None, n=None, temperature=None, stop=None, tools=None, tool_choice=None, user=None,
        logprobs=None, top_logprobs=None, response_format=None, metadata=None, store=None,
        presence_penalty=None, frequency_penalty=None, max_tokens=None, logit_bias=None,
    )
    assert out == {"model": "claude-x-1", "max_tokens": 1024, "messages": [USER]}


def test_neutral_values_are_accepted():
    out = convert(n=1, presence_penalty=0, frequency_penalty=0.0, logprobs=False,
                  response_format={"type": "text"})
    assert set(out) == {"model", "max_tokens", "messages"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n", 2),
        ("n", True),
        ("response_format", {"type": "json_object"}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", -1),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("seed", 7),
        ("logit_bias", {"50256": -100}),
        ("service_tier", "auto"),
        ("modalities", ["text"]),
        ("audio", {"voice": "alloy"}),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("metadata", {"a": "b"}),
        ("store", True),
        ("some_future_field", 1),
    ],
)
def test_unexpressible_fields_are_refused_by_name(key, value):
    with pytest.raises(UnsupportedParameter) as info:
        convert(**{key: value})
    assert info.value.param == key
    assert f"'{key}'" in info.value.message


def test_n_message_wording():
    with pytest.raises(UnsupportedParameter, match=r"'n' is not supported for Anthropic models \(only n=1\)"):
        convert(n=3)


# --- request: messages -------------------------------------------------------


def test_system_and_developer_strings_are_hoisted_and_joined():
    out = convert(messages=[
        {"role": "system", "content": "Be brief."},
        USER,
        {"role": "developer", "content": "Use French."},
    ])
    assert out["system"] == "Be brief.\n\nUse French."
    assert out["messages"] == [USER]


def test_system_with_parts_becomes_text_blocks():
    out = convert(messages=[
        {"role": "system", "content": "A"},
        {"role": "system", "content": [{"type": "text", "text": "B"}, {"type": "text", "text": "C"}]},
        USER,
    ])
    assert out["system"] == [{"type": "text", "text": t} for t in "ABC"]


def test_system_image_is_refused():
    param = refused(UnsupportedParameter, messages=[
        {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        USER,
    ])
    assert param == "messages[0].content[0].type"


def test_user_parts_text_and_images():
    out = convert(messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
    ]}])
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_bad_image_urls():
    bad_data = {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
    ftp = {"type": "image_url", "image_url": {"url": "ftp://host/a.png"}}
    url_param = "messages[0].content[0].image_url.url"
    assert refused(InvalidRequest, messages=[{"role": "user", "content": [bad_data]}]) == url_param
    assert refused(UnsupportedParameter, messages=[{"role": "user", "content": [ftp]}]) == url_param


def test_unknown_part_type_is_refused_with_index():
    param = refused(UnsupportedParameter, messages=[
        USER,
        {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "input_audio"}]},
    ])
    assert param == "messages[1].content[1].type"


def test_message_name_is_refused():
    assert refused(UnsupportedParameter, messages=[{**USER, "name": "bob"}]) == "messages[0].name"


def test_unknown_role_is_invalid():
    assert refused(InvalidRequest, messages=[{"role": "robot", "content": "x"}]) == "messages[0].role"


def test_unknown_message_field_is_refused_but_echoed_empties_pass():
    assert refused(UnsupportedParameter, messages=[{**USER, "audio": {"id": "a"}}]) == "messages[0].audio"
    echoed = {"role": "assistant", "content": "ok", "refusal": None, "annotations": []}
    assert convert(messages=[USER, echoed, USER])["messages"][1] == {"role": "assistant", "content": "ok"}


def test_messages_must_be_nonempty_and_not_only_system():
    assert refused(InvalidRequest, messages=[]) == "messages"
    assert refused(InvalidRequest, messages=[{"role": "system", "content": "s"}]) == "messages"
