"""The OpenAI chat reading that every translation shares."""

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter
from workers.translate import openai_chat as chat
from workers.translate.shapes import objects


def refuse(param: str, why: str) -> UnsupportedParameter:
    return UnsupportedParameter(f"'{param}' is not supported for Test models ({why})", param=param)


def test_message_refuses_tool_calls_outside_assistant_turns():
    msg = {"role": "system", "content": "x", "tool_calls": [{"id": "a", "function": {"name": "f"}}]}
    with pytest.raises(InvalidRequest) as caught:
        chat.message(msg, "messages[0]", refuse, "Test")
    assert caught.value.param == "messages[0].tool_calls"


def test_message_names_the_target_for_unknown_keys():
    with pytest.raises(UnsupportedParameter) as caught:
        chat.message({"role": "user", "content": "x", "audio": {"id": "a"}}, "messages[2]", refuse, "Test")
    assert "no Test equivalent" in str(caught.value)
    assert caught.value.param == "messages[2].audio"


def test_message_needs_a_tool_call_id_on_tool_results():
    with pytest.raises(InvalidRequest) as caught:
        chat.message({"role": "tool", "content": "42"}, "messages[1]", refuse, "Test")
    assert caught.value.param == "messages[1].tool_call_id"


def test_image_accepts_the_target_schemes_only():
    part = {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}}
    assert chat.image(part, "p", refuse, ("gs://",)) == chat.Image(url="gs://bucket/cat.png")
    with pytest.raises(UnsupportedParameter) as caught:
        chat.image(part, "p", refuse)
    assert "images must be http(s) or base64 data URLs" in str(caught.value)


def test_image_reads_base64_data_urls():
    part = {"type": "image_url", "image_url": "data:image/png;base64,AAAA"}
    assert chat.image(part, "p", refuse) == chat.Image(media_type="image/png", data="AAAA")


def test_content_parts_keep_order_and_refuse_images_where_not_allowed():
    content = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    assert chat.content_parts(content, "c", refuse, images=True) == ["a", chat.Image(url="https://x/y.png")]
    with pytest.raises(UnsupportedParameter) as caught:
        chat.content_parts(content, "c", refuse, images=False)
    assert caught.value.param == "c[1].type"


def test_tool_calls_decode_arguments_and_refuse_non_objects():
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]
    assert chat.tool_calls(calls, "t", refuse) == [chat.ToolCall("c1", "f", {"x": 1})]
    calls[0]["function"]["arguments"] = "[1]"
    with pytest.raises(InvalidRequest) as caught:
        chat.tool_calls(calls, "t", refuse)
    assert caught.value.param == "t[0].function.arguments"


def test_function_tools_refuse_strict_schemas():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert chat.function_tools(tools, refuse) == [chat.FunctionTool("f", None, {"type": "object"})]
    tools[0]["function"]["strict"] = True
    with pytest.raises(UnsupportedParameter) as caught:
        chat.function_tools(tools, refuse)
    assert caught.value.param == "tools[0].function.strict"


def test_tool_results_in_a_row_share_one_user_turn():
    turns: list[dict] = [{"role": "assistant", "parts": ["call a", "call b"]}]
    results = chat.ToolResults(turns, "parts")
    results.add("a")
    results.add("b")
    assert results.is_open and turns[1:] == [{"role": "user", "parts": ["a", "b"]}]
    results.close()
    results.add("c")  # after any other message: a turn of its own
    assert turns[2:] == [{"role": "user", "parts": ["c"]}]


def test_objects_walks_a_list_refusing_the_first_bad_item_in_order():
    assert list(objects([{"a": 1}, {}], "tools")) == [("tools[0]", {"a": 1}), ("tools[1]", {})]
    with pytest.raises(InvalidRequest) as caught:
        list(objects({"a": 1}, "tools"))
    assert (str(caught.value), caught.value.param) == ("'tools' must be a list", "tools")
    walked = []
    with pytest.raises(InvalidRequest) as caught:
        for path, _ in objects([{}, 5, "x"], "tools"):
            walked.append(path)
    assert walked == ["tools[0]"] and caught.value.param == "tools[1]"
