"""An Anthropic client's request to a model spoken to through the chat pivot: mid-conversation system
messages, thinking and effort to ``reasoning_effort``, context management, Claude Code's tool shapes,
and ``drop_params`` (anthropic_client_request, anthropic_client_reasoning, drop_params)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.errors import InvalidRequest, UnsupportedParameter
from workers.translate.anthropic_client_request import translate_messages_request
from workers.translate.drop_params import without_dropped

FIXTURES = Path(__file__).resolve().parents[1] / "clients" / "fixtures"
USER = {"role": "user", "content": "hi"}
CLAUDE_CODE_EXTRAS = {"thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "high"},
                      "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}}


def translate(*, reasoning=False, drop=(), **body):
    body.setdefault("model", "claude-alias")
    body.setdefault("max_tokens", 256)
    body.setdefault("messages", [USER])
    return translate_messages_request(body, upstream_model="gpt-x", reasoning=reasoning, drop=drop)


def refusal(exc_type=UnsupportedParameter, **kwargs) -> str:
    with pytest.raises(exc_type) as info:
        translate(**kwargs)
    return info.value.param


def test_a_system_message_inside_the_conversation_stays_where_it_is():
    block = {"type": "text", "text": "cwd: /w", "cache_control": {"type": "ephemeral"}}
    system = {"role": "system", "content": [block]}
    out = translate(system="Be brief.", messages=[USER, system]).body
    assert out["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                               {"role": "system", "content": "cwd: /w"}]
    middle = translate(messages=[USER, {"role": "system", "content": "now in French"},
                                 {"role": "assistant", "content": "Oui"}, USER]).body
    assert [m["role"] for m in middle["messages"]] == ["user", "system", "assistant", "user"]
    # An empty one says nothing, and the prefill rule looks past system messages.
    assert translate(messages=[USER, {"role": "system", "content": ""}]).body["messages"] == [USER]
    assert refusal(messages=[USER, {"role": "assistant", "content": "So"}, {"role": "system", "content": "x"}]) \
        == "messages[1].role"


@pytest.mark.parametrize(("extras", "effort"), [
    ({"thinking": {"type": "adaptive", "display": "omitted"}, "output_config": {"effort": "high"}}, "high"),
    ({"thinking": {"type": "adaptive"}}, None),  # the model decides: the target's own default
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
    ({"thinking": {"type": "enabled", "budget_tokens": 5000}}, "medium"),
    ({"thinking": {"type": "enabled", "budget_tokens": 60000}}, "high"),
    ({"thinking": {"type": "enabled", "budget_tokens": 60000}, "output_config": {"effort": "low"}}, "low"),
    ({"output_config": {"effort": "xhigh"}}, "xhigh"),
    ({"thinking": {"type": "disabled"}}, None),
])
def test_thinking_and_effort_become_reasoning_effort_where_the_model_has_a_control(extras, effort):
    out = translate(reasoning=True, **extras).body
    assert out.get("reasoning_effort") == effort
    # Reasoning models take max_completion_tokens, not max_tokens.
    assert out["max_completion_tokens"] == 256 and "max_tokens" not in out


def test_a_per_turn_effort_on_a_message_holds_from_that_turn():
    system = {"role": "system", "content": "env", "output_config": {"effort": "medium"}}
    out = translate(reasoning=True, messages=[USER, system], output_config={"effort": "high"}).body
    assert out["reasoning_effort"] == "medium"
    assert "output_config" not in out["messages"][1]


def test_without_a_reasoning_control_thinking_and_effort_are_refused_by_name():
    assert refusal(thinking={"type": "adaptive"}) == "thinking"
    assert refusal(output_config={"effort": "high"}) == "output_config.effort"
    system = {"role": "system", "content": "env", "output_config": {"effort": "medium"}}
    assert refusal(messages=[USER, system]) == "messages[1].output_config.effort"
    # Disabled thinking asks for nothing.
    assert "reasoning_effort" not in translate(thinking={"type": "disabled"}).body


def test_bad_reasoning_settings_are_invalid_whatever_the_model():
    for reasoning in (True, False):
        assert refusal(InvalidRequest, reasoning=reasoning, thinking={"type": "enabled"}) == "thinking.budget_tokens"
        assert refusal(InvalidRequest, reasoning=reasoning, thinking={"type": "sometimes"}) == "thinking.type"
    assert refusal(InvalidRequest, reasoning=True, output_config={"effort": "extreme"}) == "output_config.effort"
    assert refusal(reasoning=True, thinking={"type": "adaptive", "budget": 3}) == "thinking.budget"
    assert refusal(reasoning=True, output_config={"task_budget": 3}) == "output_config.task_budget"


def test_a_json_schema_format_becomes_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    out = translate(output_config={"format": {"type": "json_schema", "schema": schema}}).body
    assert out["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    assert refusal(output_config={"format": {"type": "xml"}}) == "output_config.format"


def test_context_management_clear_thinking_is_moot_other_edits_are_refused():
    moot = translate(context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}).body
    assert "context_management" not in moot
    edits = {"edits": [{"type": "clear_thinking_20251015"}, {"type": "clear_tool_uses_20250919"}]}
    assert refusal(context_management=edits) == "context_management"
    dropped = translate(context_management=edits, drop=["context_management"])
    assert dropped.dropped == ["context_management"]


def test_earlier_thinking_is_left_out_of_the_history():
    assistant = {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"}, {"type": "redacted_thinking", "data": "x"},
        {"type": "text", "text": "Hello"}]}
    out = translate(messages=[USER, assistant, USER]).body
    assert out["messages"][1] == {"role": "assistant", "content": "Hello"}


def test_claude_codes_tools():
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "properties": {"command": {"type": "string"}}, "additionalProperties": False}
    bash = {"name": "Bash", "description": "Run", "input_schema": schema, "cache_control": {"type": "ephemeral"}}
    deferred = {"name": "DeferredToolPlaceholder", "description": "x", "input_schema": {"type": "object"},
                "defer_loading": True}
    strict = {"name": "Exact", "input_schema": {"type": "object"}, "strict": True}
    out = translate(tools=[bash, deferred, strict]).body
    parameters = {k: v for k, v in schema.items() if k != "$schema"}
    assert out["tools"] == [
        {"type": "function", "function": {"name": "Bash", "description": "Run", "parameters": parameters}},
        {"type": "function", "function": {"name": "Exact", "parameters": {"type": "object"}, "strict": True}},
    ]
    assert "tools" not in translate(tools=[deferred]).body  # OpenAI refuses an empty tools list


def test_drop_params_removes_and_names_what_it_dropped():
    server = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    weather = {"name": "w", "input_schema": {"type": "object"}}
    assert refusal(tools=[weather, server]) == "tools[1].type"
    result = translate(tools=[weather, server], top_k=5, thinking={"type": "adaptive"},
                       output_config={"effort": "high"},
                       drop=["tools.web_search", "top_k", "thinking", "output_config.effort", "service_tier"])
    assert result.dropped == ["tools.web_search", "top_k", "thinking", "output_config.effort"]
    assert [tool["function"]["name"] for tool in result.body["tools"]] == ["w"]
    assert "reasoning_effort" not in result.body and "top_k" not in result.body
    system = {"role": "system", "content": "env", "output_config": {"effort": "medium"}}
    per_turn = translate(messages=[USER, system], drop=["output_config.effort"])
    assert per_turn.dropped == ["output_config.effort"]
    # Dropping wins over a reasoning control: the operator asked for it.
    assert "reasoning_effort" not in translate(reasoning=True, thinking={"type": "enabled", "budget_tokens": 2048},
                                               drop=["thinking"]).body


def test_without_dropped_copies_and_matches_dated_tool_types():
    body = {"output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {}}},
            "tools": [{"type": "bash_20250124", "name": "bash"}, {"name": "x"}], "top_k": None}
    out, dropped = without_dropped(body, ["output_config.effort", "tools.bash", "top_k", "tools.web_search",
                                          "metadata.user_id"])
    assert out == {"output_config": {"format": {"type": "json_schema", "schema": {}}}, "tools": [{"name": "x"}],
                   "top_k": None}
    assert dropped.paths == ["output_config.effort", "tools.bash"]
    assert body["output_config"]["effort"] == "high" and len(body["tools"]) == 2  # the request is not modified
    assert without_dropped(body, ["tools.bash_20250124"])[1].paths == ["tools.bash_20250124"]
    assert without_dropped(body, ["tools.bash_2025"])[1].paths == []


def claude_code_bodies(name: str) -> list[dict]:
    """The request bodies a fixture recorded, with the recorder's references to the first request's fields
    and list items ("<same as requests[0].body.KEY>", "...KEY[I]>": tests/clients/record.py dedupe) resolved."""
    requests = json.loads((FIXTURES / name).read_text())["requests"]
    first = requests[0]["body"]

    def resolve(key, value):
        if isinstance(value, str) and value == f"<same as requests[0].body.{key}>":
            return first[key]
        if isinstance(value, list):
            return [first[key][i] if item == f"<same as requests[0].body.{key}[{i}]>" else item
                    for i, item in enumerate(value)]
        return value

    return [{key: resolve(key, value) for key, value in request["body"].items()} for request in requests]


@pytest.mark.parametrize("fixture", ["claude-code-2.1.332-say-hi-openai-model.json", "claude-code-2.1.332-tool.json"])
def test_what_claude_code_sends_translates(fixture):
    for body in claude_code_bodies(fixture):
        assert refusal(**body) == "thinking"  # a model with no reasoning control, and nothing dropped
        dropped = translate(drop=["thinking", "output_config.effort"], **body)
        assert dropped.dropped == ["thinking", "output_config.effort"]
        assert "reasoning_effort" not in dropped.body
        reasoning = translate(reasoning=True, **body)
        assert reasoning.dropped == [] and reasoning.body["reasoning_effort"] in ("medium", "high")
        roles = [m["role"] for m in reasoning.body["messages"]]
        assert roles[:3] == ["system", "user", "system"]
        assert all(tool["function"]["name"] != "DeferredToolPlaceholder" for tool in reasoning.body["tools"])
        assert all("$schema" not in tool["function"]["parameters"] for tool in reasoning.body["tools"])
