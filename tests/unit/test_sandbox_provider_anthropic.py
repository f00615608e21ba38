"""The sandbox provider's Anthropic extras over real HTTP: count_tokens, the mid-conversation system beta
check, the headers and query string the log keeps, and a Claude Code-shaped tool turn."""

from __future__ import annotations

import json
import uuid

import anthropic
import pytest
import requests

from sandbox.provider_logic import MID_CONVERSATION_SYSTEM_BETA, anthropic_betas
from tests.unit.sandbox_fixtures import ANTHROPIC_HEADERS, SECRET, messages, messages_body

TOOL = {"name": "Bash", "description": "run a command", "input_schema": {"type": "object"}}
# Claude Code's header carries several betas (NOTES.md, "Real clients")
CLAUDE_BETAS = f"claude-code-20250219,interleaved-thinking-2025-05-14,{MID_CONVERSATION_SYSTEM_BETA},effort-2025-11-24"


def count(base, body, headers=None, query=""):
    return requests.post(f"{base}/v1/messages/count_tokens{query}", json=body,
                         headers={**ANTHROPIC_HEADERS, **(headers or {})}, timeout=10)


def log(base, key):
    return requests.get(f"{base}/_sandbox/log", params={"key": key}, timeout=5).json()["requests"]


# --- count_tokens ---

def test_count_tokens_counts_system_messages_and_tools(base):
    body = {"model": "claude-test", "system": "be brief", "messages": [
        {"role": "user", "content": "one two [[sandbox tool=Bash]] three"},
        {"role": "assistant", "content": [{"type": "text", "text": "four"}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "five six"}]}]}
    r = count(base, body)
    assert r.status_code == 200 and r.json() == {"input_tokens": 2 + 3 + 1 + 2}
    plain = {**body, "max_tokens": 50}
    assert messages(base, "x", **plain).json()["usage"]["input_tokens"] == r.json()["input_tokens"]
    tool_words = len(json.dumps(TOOL, sort_keys=True).split())
    assert count(base, {**body, "tools": [TOOL]}).json() == {"input_tokens": 8 + tool_words}
    assert count(base, {**body, "tools": [TOOL, TOOL]}).json() == {"input_tokens": 8 + 2 * tool_words}
    # ?beta=true (Anthropic's SDK and Claude Code add it) reaches the same endpoint
    assert count(base, body, query="?beta=true").json() == r.json()


def test_count_tokens_with_the_sdks(base):
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    counted = client.messages.count_tokens(model="claude-test", system="a b",
                                           messages=[{"role": "user", "content": "c d e"}])
    assert counted.input_tokens == 5
    beta = client.beta.messages.count_tokens(model="claude-test", messages=[{"role": "user", "content": "c d e"}],
                                             betas=["token-counting-2024-11-01"], extra_query={"beta": "true"})
    assert beta.input_tokens == 3


def test_count_tokens_refusals_are_anthropics(base, keyed):
    r = requests.post(f"{base}/v1/messages/count_tokens", json={"model": "m", "messages": []}, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["message"] == "anthropic-version header is required"
    r = count(base, {"model": "m", "messages": "nope"})
    assert r.status_code == 400 and r.json()["type"] == "error"
    r = count(base, {"model": "m", "messages": [{"role": "user", "content": "x [[sandbox fail=529]]"}]})
    assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
    assert count(keyed, {"model": "m", "messages": []}).status_code == 401
    assert count(keyed, {"model": "m", "messages": []}, headers={"x-api-key": SECRET}).json() == {"input_tokens": 0}
    assert requests.get(f"{base}/v1/messages/count_tokens", headers=ANTHROPIC_HEADERS, timeout=5).status_code == 405


# --- the mid-conversation system beta ---

MID_SYSTEM = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
              {"role": "system", "content": "from now on be terse"}, {"role": "user", "content": "again"}]


def test_a_system_message_inside_messages_needs_the_beta(base):
    r = messages(base, "x", messages=MID_SYSTEM)
    assert r.status_code == 400 and r.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "messages.2.role: Input should be 'user' or 'assistant'"}}
    r = count(base, {"model": "m", "messages": MID_SYSTEM})
    assert r.status_code == 400 and "messages.2.role" in r.json()["error"]["message"]
    for headers in ({"anthropic-beta": CLAUDE_BETAS}, {"anthropic-beta": MID_CONVERSATION_SYSTEM_BETA}):
        answer = messages(base, "x", messages=MID_SYSTEM, headers=headers).json()
        assert answer["content"][0]["text"] == "Sandbox reply: again"
        assert answer["usage"]["input_tokens"] == 1 + 1 + 5 + 1  # the system message counts
    # other roles stay refused, whatever the betas
    r = messages(base, "x", messages=[{"role": "tool", "content": "x"}], headers={"anthropic-beta": CLAUDE_BETAS})
    assert r.status_code == 400 and r.json()["error"]["message"] == (
        "messages.0.role: Input should be 'user' or 'assistant'")
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="messages.2.role"):
        client.messages.create(model="c", max_tokens=20, messages=MID_SYSTEM)
    beta = client.beta.messages.create(model="c", max_tokens=20, messages=MID_SYSTEM,
                                       betas=[MID_CONVERSATION_SYSTEM_BETA])
    assert beta.content[0].text == "Sandbox reply: again"


@pytest.mark.parametrize("model", ["claude-opus-5-5", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929",
                                   "claude-opus-4-8"])
def test_current_models_take_a_system_message_without_the_beta(base, model):
    """As Anthropic's generally available mid-conversation system messages, which Claude Code sends with no
    beta; older ids (the "x" above) still need it."""
    r = requests.post(f"{base}/v1/messages", headers=ANTHROPIC_HEADERS, timeout=5,
                      json={"model": model, "max_tokens": 20, "messages": MID_SYSTEM})
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "Sandbox reply: again"
    assert count(base, {"model": model, "messages": MID_SYSTEM}).status_code == 200
    tool = requests.post(f"{base}/v1/messages", headers=ANTHROPIC_HEADERS, timeout=5,
                         json={"model": model, "max_tokens": 20, "messages": [{"role": "tool", "content": "x"}]})
    assert tool.status_code == 400


def test_betas_are_read_from_every_header_and_list():
    assert anthropic_betas(["a, b", "c"]) == {"a", "b", "c"}
    assert anthropic_betas(None) == frozenset() and anthropic_betas([" , "]) == frozenset()


def test_the_log_keeps_betas_version_query_and_body(base):
    key = f"beta-{uuid.uuid4()}"
    body = messages_body("hi", context_management={"edits": []}, output_config={"effort": "high"}, x_future=1)
    r = requests.post(f"{base}/v1/messages?beta=true", json=body, timeout=5, headers={
        **ANTHROPIC_HEADERS, "anthropic-beta": CLAUDE_BETAS, "X-Request-Id": key,
        "X-Claude-Code-Session-Id": "s-1"})
    assert r.status_code == 200
    [entry] = log(base, key)
    assert entry["method"] == "POST" and entry["path"] == "/v1/messages" and entry["query"] == "beta=true"
    assert entry["headers"]["anthropic-beta"] == CLAUDE_BETAS and entry["headers"]["anthropic-version"] == "2023-06-01"
    assert entry["headers"]["x-claude-code-session-id"] == "s-1"
    assert entry["body"] == body  # unknown fields arrive untouched


# --- a Claude Code-shaped tool turn ---

def test_a_claude_code_turn_with_a_scripted_bash_call(base):
    client = anthropic.Anthropic(base_url=base, api_key="k", max_retries=0,
                                 default_headers={"anthropic-beta": CLAUDE_BETAS})
    prompt = [{"type": "text", "text": "<system-reminder>context</system-reminder>"},
              {"type": "text", "text": 'Say hi. [[sandbox tool=Bash args={"command": "echo hi", '
                                       '"description": "Print hi"}]]'}]
    history = [{"role": "user", "content": prompt}]
    first = client.messages.create(model="claude-test", max_tokens=500, tools=[TOOL], messages=history,
                                   thinking={"type": "adaptive"}, system=[{"type": "text", "text": "You are CC"}])
    thinking, use = first.content
    assert thinking.type == "thinking" and use.type == "tool_use" and first.stop_reason == "tool_use"
    assert use.name == "Bash" and use.input == {"command": "echo hi", "description": "Print hi"}
    history += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "hi\n"}]},
                    {"type": "text", "text": "<system-reminder>todo</system-reminder>"}]},
                {"role": "system", "content": "steering reminder"}]
    with client.messages.stream(model="claude-test", max_tokens=500, tools=[TOOL], messages=history) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Sandbox reply: tool said hi" and final.stop_reason == "end_turn"
