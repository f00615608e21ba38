"""OpenAI Responses API request -> chat pivot (responses_request): Codex's request, tools, items, drops, refusals."""

import json

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter
from tests.unit.responses_fixtures import (
    APPLY_PATCH_GRAMMAR,
    MCP_NAMESPACE,
    PATCH,
    SHELL_TOOL,
    SIGNED,
    WEB_SEARCH_TOOL,
    codex_request,
)
from workers.translate.anthropic import chat_request_to_anthropic
from workers.translate.gemini import chat_request_to_gemini
from workers.translate.responses_items import ResponsesTool, seal
from workers.translate.responses_request import (
    ENDPOINT_FIELDS,
    IGNORED_HINTS,
    input_items,
    responses_request_to_chat,
)

DROP_WEB = frozenset({"tools.web_search"})


def translate(body=None, drop=frozenset(), **kwargs):
    return responses_request_to_chat(body or codex_request(), upstream_model="up-1", drop=drop, **kwargs)


def simple(**fields):
    return translate({"model": "m", "input": "hi", **fields})


def refused(body, drop=frozenset(), exc=UnsupportedParameter, **kwargs) -> str:
    with pytest.raises(exc) as info:
        translate(body, drop, **kwargs)
    assert info.value.status == 400
    return info.value.param


# --- Codex's request ---------------------------------------------------------------------------------

def test_codex_request_becomes_chat_with_its_hints_ignored():
    chat = translate(drop=DROP_WEB)
    body = chat.body
    assert set(body) == {"model", "messages", "tools", "tool_choice", "parallel_tool_calls", "reasoning_effort"}
    assert (body["model"], body["tool_choice"], body["parallel_tool_calls"], body["reasoning_effort"]) == (
        "up-1", "auto", False, "medium")
    assert chat.dropped == ["tools.web_search"]
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "system", "user", "user", "assistant", "tool", "assistant", "tool", "assistant", "tool"]
    assert body["messages"][0]["content"] == "You are Codex, a coding agent running in the Codex CLI."
    assert body["messages"][1]["content"].startswith("<permissions instructions>")  # developer -> system


def test_codex_tools_become_functions_that_map_back():
    chat = translate(drop=DROP_WEB)
    functions = [tool["function"] for tool in chat.body["tools"]]
    assert [fn["name"] for fn in functions] == ["shell_command", "update_plan", "apply_patch", "mcp__docs__search"]
    assert functions[0]["parameters"] == SHELL_TOOL["parameters"] and "strict" not in functions[0]
    patch = functions[2]
    assert patch["parameters"] == {"type": "object", "additionalProperties": False, "required": ["input"],
                                   "properties": {"input": {"type": "string",
                                                            "description": "The tool's raw input text."}}}
    assert patch["description"].startswith("Use the `apply_patch` tool to edit files.")
    assert APPLY_PATCH_GRAMMAR in patch["description"] and "lark" in patch["description"]
    assert functions[3]["description"] == "Search the docs."
    assert chat.tools.tool("apply_patch") == ResponsesTool("custom", "apply_patch")
    assert chat.tools.tool("mcp__docs__search") == ResponsesTool("function", "search", "mcp__docs")
    assert chat.tools.tool("shell_command") == ResponsesTool("function", "shell_command")
    assert chat.tools.tool("made_up") == ResponsesTool("function", "made_up")


def test_codex_history_items_become_turns():
    messages = translate(drop=DROP_WEB).body["messages"]
    assistant = messages[4]
    assert assistant["content"] == "Creating it."
    assert assistant["thinking_blocks"] == [SIGNED] and assistant["reasoning_content"] == SIGNED["thinking"]
    assert assistant["tool_calls"] == [{"id": "call_1", "type": "function", "function": {
        "name": "shell_command", "arguments": '{"command":"ls","workdir":"/tmp/w"}'}}]
    assert messages[5] == {"role": "tool", "tool_call_id": "call_1", "content": "Exit code: 0\nOutput:\n"}
    custom = messages[6]["tool_calls"][0]
    assert custom["function"]["name"] == "apply_patch"
    assert json.loads(custom["function"]["arguments"]) == {"input": PATCH}
    assert messages[7] == {"role": "tool", "tool_call_id": "call_2", "content": "Success. Updated: A notes.txt"}
    assert messages[8]["tool_calls"][0]["function"]["name"] == "mcp__docs__search"
    assert messages[9]["content"] == "no hits"  # an output given as input_text parts


def test_codex_request_reaches_anthropic_and_gemini():
    chat = translate(drop=DROP_WEB)
    anthropic = chat_request_to_anthropic(chat.body, upstream_model="claude-x", default_max_tokens=4096)
    assert anthropic["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert anthropic["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert [tool["name"] for tool in anthropic["tools"]] == ["shell_command", "update_plan", "apply_patch",
                                                              "mcp__docs__search"]
    assert anthropic["messages"][2]["content"][0] == SIGNED  # thinking first, as Anthropic wants it
    # Gemini cannot be told to call one tool at a time: for it the hint is ignored, not refused.
    chat = translate(drop=DROP_WEB, parallel_tool_calls=False)
    assert "parallel_tool_calls" not in chat.body
    gemini = chat_request_to_gemini(chat.body)
    assert gemini["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 8192}}
    assert [d["name"] for d in gemini["tools"][0]["functionDeclarations"]][-1] == "mcp__docs__search"


def test_web_search_is_refused_by_name_unless_dropped():
    assert refused(codex_request()) == "tools[4].type"
    with pytest.raises(UnsupportedParameter) as info:
        translate()
    assert "tools.web_search" in info.value.message  # what the operator can do about it


@pytest.mark.parametrize("hint", [h for h in IGNORED_HINTS if "." not in h])
def test_ignored_hints_change_nothing(hint):
    plain = simple()
    assert simple(**{hint: {"x": "y"} if hint in ("metadata", "client_metadata", "stream_options") else "auto"}
                  ).body == plain.body


def test_nested_ignored_hints_and_endpoint_fields_change_nothing():
    plain = simple().body
    assert simple(text={"verbosity": "high"}, reasoning={"summary": "detailed", "generate_summary": "auto",
                                                         "context": "all_turns"}).body == plain
    assert simple(store=False, stream=True, previous_response_id="resp_1").body == plain
    assert set(ENDPOINT_FIELDS) == {"model", "stream", "store", "previous_response_id"}


# --- refused and dropped -----------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [("background", True), ("conversation", "conv_1"),
                                              ("prompt", {"id": "pmpt_1"})])
def test_background_conversation_and_prompt_are_always_refused(field, value):
    assert refused({"model": "m", "input": "hi", field: value}) == field
    assert refused({"model": "m", "input": "hi", field: value}, drop={field}) == field
    assert simple(**{field: None}).body == simple().body
    assert simple(background=False).body == simple().body


def test_unknown_fields_are_refused_unless_dropped():
    assert refused({"model": "m", "input": "hi", "moderation": {"model": "omni"}}) == "moderation"
    chat = translate({"model": "m", "input": "hi", "moderation": {"model": "omni"}, "temperature": 0.2},
                     drop={"moderation", "temperature", "top_p"})
    assert chat.dropped == ["moderation", "temperature"]  # top_p was not sent: nothing dropped
    assert "temperature" not in chat.body
    assert refused({"model": "m", "input": "hi", "reasoning": {"mode": "pro"}}) == "reasoning.mode"
    assert refused({"model": "m", "input": "hi", "text": {"format": {"type": "text"}, "x": 1}}) == "text.x"


def test_dotted_drops():
    chat = translate({"model": "m", "input": "hi", "reasoning": {"effort": "high", "summary": "auto"}},
                     drop={"reasoning.effort"})
    assert "reasoning_effort" not in chat.body and chat.dropped == ["reasoning.effort"]
    chat = translate({"model": "m", "input": "hi", "text": {"format": {"type": "json_object"}}},
                     drop={"text.format"})
    assert "response_format" not in chat.body and chat.dropped == ["text.format"]
    chat = translate({"model": "m", "input": "hi", "reasoning": {"effort": "high"}}, drop={"reasoning"})
    assert "reasoning_effort" not in chat.body and chat.dropped == ["reasoning"]


@pytest.mark.parametrize("tool_type", ["file_search", "local_shell", "computer_use_preview", "code_interpreter",
                                       "image_generation", "mcp", "tool_search", "web_search_preview",
                                       "something_new"])
def test_tools_the_target_cannot_run(tool_type):
    body = {"model": "m", "input": "hi", "tools": [SHELL_TOOL, {"type": tool_type}]}
    assert refused(body) == "tools[1].type"
    chat = translate(body, drop={f"tools.{tool_type}"})
    assert chat.dropped == [f"tools.{tool_type}"] and len(chat.body["tools"]) == 1


def test_builtin_call_items_go_with_their_dropped_tool():
    body = {"model": "m", "tools": [WEB_SEARCH_TOOL], "input": [
        {"type": "message", "role": "user", "content": "news?"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search", "query": "x"}},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "None."}]}]}
    assert refused(body) == "tools[0].type"
    chat = translate(body, drop=DROP_WEB)
    assert chat.dropped == ["tools.web_search", "input.web_search_call"]
    assert [m["role"] for m in chat.body["messages"]] == ["user", "assistant"]
    assert "tools" not in chat.body
    assert refused({"model": "m", "input": [body["input"][1]]}) == "input[0].type"


@pytest.mark.parametrize(("item", "param"), [
    ({"type": "item_reference", "id": "msg_1"}, "input[0].type"),
    ({"type": "compaction", "encrypted_content": "x"}, "input[0].type"),
    ({"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "f"}]},
     "input[0].content[0].type"),
    ({"type": "message", "role": "user", "content": [{"type": "input_image", "file_id": "f", "detail": "auto"}]},
     "input[0].content[0].file_id"),
    ({"type": "message", "role": "system", "content": [{"type": "input_image", "image_url": "https://x/y.png",
                                                        "detail": "auto"}]}, "input[0].content[0].type"),
])
def test_untranslatable_items_are_refused_by_name(item, param):
    assert refused({"model": "m", "input": [item]}) == param


@pytest.mark.parametrize(("body", "param"), [
    ({"input": 3}, "input"),
    ({"input": []}, "input"),
    ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "message", "role": ["user"], "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "input[0]"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]}, "input[0].arguments"),
    ({"input": [{"type": "custom_tool_call", "call_id": "c", "name": "f"}]}, "input[0].input"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": "hi", "instructions": ["x"]}, "instructions"),
    ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "hi", "temperature": "hot"}, "temperature"),
    ({"input": "hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"input": "hi", "tools": [{"type": "namespace", "name": "ns", "tools": [{"type": "web_search"}]}]},
     "tools[0].tools[0].type"),
    ({"input": "hi", "tools": [SHELL_TOOL], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
])
def test_malformed_requests_name_the_field(body, param):
    assert refused({"model": "m", **body}, exc=InvalidRequest) == param


def test_tool_choice():
    tools = [SHELL_TOOL, {"type": "custom", "name": "apply_patch"}]
    assert simple(tools=tools, tool_choice="required").body["tool_choice"] == "required"
    assert simple(tools=tools, tool_choice={"type": "custom", "name": "apply_patch"}).body["tool_choice"] == {
        "type": "function", "function": {"name": "apply_patch"}}
    assert simple(tools=tools, tool_choice={"type": "function", "name": "shell_command"}).body["tool_choice"] == {
        "type": "function", "function": {"name": "shell_command"}}
    allowed = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "shell_command"}]}
    assert refused({"model": "m", "input": "hi", "tools": tools, "tool_choice": allowed}) == "tool_choice"
    chat = translate({"model": "m", "input": "hi", "tools": tools, "tool_choice": allowed}, drop={"tool_choice"})
    assert "tool_choice" not in chat.body and chat.dropped == ["tool_choice"]
    # With every tool dropped, "auto" means nothing; "required" cannot be honoured.
    assert "tool_choice" not in translate({"model": "m", "input": "hi", "tools": [WEB_SEARCH_TOOL],
                                           "tool_choice": "auto"}, drop=DROP_WEB).body
    assert refused({"model": "m", "input": "hi", "tools": [WEB_SEARCH_TOOL], "tool_choice": "required"},
                   drop=DROP_WEB) == "tool_choice"


def test_function_tool_fields():
    tool = {**SHELL_TOOL, "strict": True, "defer_loading": True, "allowed_callers": ["direct"],
            "output_schema": {"type": "string"}}
    fn = simple(tools=[tool]).body["tools"][0]["function"]
    assert fn["strict"] is True and set(fn) == {"name", "description", "parameters", "strict"}
    assert refused({"model": "m", "input": "hi", "tools": [{**SHELL_TOOL, "async": True}]}) == "tools[0].async"
    assert simple(tools=[{"type": "function", "name": "f"}]).body["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {}}


# --- messages ----------------------------------------------------------------------------------------

def test_input_string_and_content_parts():
    assert simple().body["messages"] == [{"role": "user", "content": "hi"}]
    assert input_items({"input": "hi"}) == [{"type": "message", "role": "user",
                                             "content": [{"type": "input_text", "text": "hi"}]}]
    body = {"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "What is this?"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,iVBO",
                                      "detail": "high"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed", "phase": "final_answer",
         "content": [{"type": "output_text", "text": "A cat.", "annotations": []},
                     {"type": "refusal", "refusal": "No more."}]}]}
    messages = translate(body).body["messages"]
    assert messages[0] == {"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO", "detail": "high"}}]}
    assert messages[1] == {"role": "assistant", "content": [{"type": "text", "text": "A cat."},
                                                            {"type": "text", "text": "No more."}]}


def test_images_in_tool_output_follow_the_tool_results_as_a_user_turn():
    image = {"type": "input_image", "image_url": "https://example.com/shot.png", "detail": "auto"}
    body = {"model": "m", "input": [
        {"role": "user", "content": "look"},
        {"type": "function_call", "call_id": "a", "name": "view_image", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "view_image", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": [{"type": "input_text", "text": "first"}, image]},
        {"type": "function_call_output", "call_id": "b", "output": "second"},
        {"role": "user", "content": "and?"}]}
    messages = translate(body).body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "user", "user"]
    assert len(messages[1]["tool_calls"]) == 2
    assert messages[2]["content"] == "first" and messages[3]["content"] == "second"
    assert messages[4] == {"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "https://example.com/shot.png", "detail": "auto"}}]}
    # Anthropic gets the tool results first in the user turn, then the image.
    anthropic = chat_request_to_anthropic(translate(body).body, upstream_model="c", default_max_tokens=10)
    assert [b["type"] for b in anthropic["messages"][2]["content"]] == ["tool_result", "tool_result", "image"]
    assert anthropic["messages"][3] == {"role": "user", "content": "and?"}


def test_reasoning_items_replay_only_our_own_thinking():
    ours = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": seal([SIGNED])}
    foreign = {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "t"}],
               "encrypted_content": "gAAAAABo-openai-sealed"}
    damaged = {"type": "reasoning", "summary": [], "encrypted_content": "aigw-thinking-v1:!!!"}
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    body = {"model": "m", "input": [{"role": "user", "content": "go"}, foreign, damaged, ours, call,
                                    {"type": "function_call_output", "call_id": "c", "output": "ok"}]}
    assistant = translate(body).body["messages"][1]
    assert assistant["thinking_blocks"] == [SIGNED] and assistant["tool_calls"][0]["id"] == "c"
    # A reasoning item alone with foreign content leaves no empty assistant turn behind.
    body = {"model": "m", "input": [{"role": "user", "content": "go"}, foreign, {"role": "user", "content": "again"}]}
    assert [m["role"] for m in translate(body).body["messages"]] == ["user", "user"]


def test_history_of_a_stored_response_comes_first():
    history = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "earlier"}]},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "noted"}]}]
    chat = translate({"model": "m", "input": "now", "instructions": "Be brief.",
                      "previous_response_id": "resp_1"}, history=history)
    assert chat.body["messages"] == [{"role": "system", "content": "Be brief."},
                                     {"role": "user", "content": "earlier"},
                                     {"role": "assistant", "content": "noted"}, {"role": "user", "content": "now"}]


def test_max_tokens_temperature_user_and_formats():
    body = simple(max_output_tokens=300, temperature=0.5, top_p=0.9, user="u-1", top_logprobs=0,
                  text={"format": {"type": "json_schema", "name": "answer", "strict": True,
                                   "schema": {"type": "object"}}}).body
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["user"]) == (300, 0.5, 0.9, "u-1")
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object"}, "strict": True}}
    assert simple(text={"format": {"type": "text"}}).body == simple().body
    assert refused({"model": "m", "input": "hi", "top_logprobs": 3}) == "top_logprobs"


# --- names ----------------------------------------------------------------------------------------------

def test_long_or_odd_namespaced_names_are_shortened_safely_and_map_back():
    namespace = {"type": "namespace", "name": "mcp__" + "a-very-long-server-name." * 3, "description": "d",
                 "tools": [{"type": "function", "name": "lookup.everything_about_it", "parameters": {}}]}
    chat = simple(tools=[namespace])
    name = chat.body["tools"][0]["function"]["name"]
    assert len(name) <= 64 and name.replace("_", "").replace("-", "").isalnum() and not name[0].isdigit()
    assert chat.tools.tool(name) == ResponsesTool("function", "lookup.everything_about_it", namespace["name"])


def test_a_plain_tool_with_a_flattened_name_does_not_collide():
    plain = {"type": "function", "name": "mcp__docs__search", "parameters": {}}
    chat = simple(tools=[plain, MCP_NAMESPACE])
    names = [tool["function"]["name"] for tool in chat.body["tools"]]
    assert names[0] == "mcp__docs__search" and names[1] != names[0] and len(set(names)) == 2
    assert chat.tools.tool(names[1]) == ResponsesTool("function", "search", "mcp__docs")


# --- refusals from the target, in the caller's words ------------------------------------------------------

def test_target_refusals_are_renamed_to_the_callers_fields():
    body = {"model": "m", "input": [{"role": "user", "content": "hi"}],
            "tools": [SHELL_TOOL, {"type": "namespace", "name": "ns", "description": "d",
                                   "tools": [{"type": "function", "name": "f", "strict": True, "parameters": {}}]}],
            "text": {"format": {"type": "json_object"}}}
    chat = translate(body)
    with pytest.raises(UnsupportedParameter) as info:
        chat_request_to_anthropic(chat.body, upstream_model="c", default_max_tokens=10)
    error = chat.client_error(info.value)
    assert error.param == "text.format" and "'text.format'" in error.message
    assert chat.client_param("tools[1].function.strict") == "tools[1].tools[0].strict"
    assert chat.client_param("messages[0].content[1].type") == "input[0].content[1].type"
    assert chat.client_param("max_tokens") == "max_output_tokens"
    assert chat.client_param("reasoning_effort") == "reasoning.effort"
    assert chat.client_param("temperature") == "temperature"
    codex = translate(drop=DROP_WEB)
    assert codex.client_param("messages[0]") == "instructions"
    assert codex.client_param("messages[4].tool_calls[0].function.arguments") == "input[5].arguments"
    assert codex.client_param("messages[6].tool_calls[0]") == "input[7]"


# --- Codex's "responses-lite" request: its tools in an additional_tools input item --------------------------

def test_tools_in_an_additional_tools_item_are_the_requests_tools():
    """As Codex 0.171.0 sends them for its default model (tests/clients/fixtures/codex-0.171.0-tool.json):
    namespaces holding a custom tool and functions, in an input item with an id and a role."""
    exec_tool = {"type": "custom", "name": "exec", "description": "Run JavaScript.",
                 "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    wait = {"type": "function", "name": "wait", "description": "Wait.", "strict": False, "parameters": {}}
    body = {"model": "m", "tools": [SHELL_TOOL], "input": [
        {"type": "message", "id": "msg_1", "role": "developer",
         "content": [{"type": "input_text", "text": "Be good."}]},
        {"type": "additional_tools", "id": "at_1", "role": "developer", "tools": [
            {"type": "namespace", "name": "functions", "description": "", "tools": [exec_tool, wait]}]},
        {"type": "message", "id": "msg_2", "role": "user", "content": [{"type": "input_text", "text": "ls"}]}]}
    chat = translate(body)
    names = [tool["function"]["name"] for tool in chat.body["tools"]]
    assert names == ["shell_command", "functions__exec", "functions__wait"]
    assert chat.tools.tool("functions__exec") == ResponsesTool("custom", "exec", "functions")
    assert [message["role"] for message in chat.body["messages"]] == ["system", "user"]  # the item is no turn
    assert chat.client_param("tools[2].function.parameters") == "input[1].tools[0].tools[1].parameters"
    bad = {**body, "input": [{"type": "additional_tools", "tools": [{"type": "web_search"}]}, *body["input"][2:]]}
    assert refused(bad) == "input[0].tools[0].type"
