"""Responses API requests and chat answers shared by the test_translate_responses_*.py tests.

``codex_request`` is shaped like what Codex CLI sends (codex-rs codex-api/src/common.rs
``ResponsesApiRequest`` serialised: model, instructions, input, tools, tool_choice,
parallel_tool_calls, reasoning, store, stream, include, prompt_cache_key, text,
client_metadata; tools from codex-rs tools/src/tool_spec.rs ``ToolSpec``: function,
namespace (grouping MCP tools, codex-rs tools/src/responses_api.rs), custom (the
freeform ``apply_patch`` with a lark grammar) and web_search; input items from
codex-rs protocol/src/models.rs ``ResponseItem``, which Codex serialises without ids).
"""

from workers.translate.responses_items import seal

SIGNED = {"type": "thinking", "thinking": "I should create the file with the shell.", "signature": "RXVjbGlk"}
REDACTED = {"type": "redacted_thinking", "data": "c2VjcmV0"}

SHELL_TOOL = {
    "type": "function", "name": "shell_command",
    "description": "Runs a shell command and returns its output.", "strict": False,
    "parameters": {"type": "object", "additionalProperties": False, "required": ["command"], "properties": {
        "command": {"type": "string", "description": "The shell script to execute in the user's default shell"},
        "workdir": {"type": "string", "description": "The working directory to execute the command in"},
        "timeout_ms": {"type": "number", "description": "The timeout for the command in milliseconds"}}},
}
PLAN_TOOL = {
    "type": "function", "name": "update_plan", "description": "Updates the task plan.", "strict": False,
    "parameters": {"type": "object", "properties": {"plan": {"type": "array", "items": {"type": "object"}}},
                   "required": ["plan"], "additionalProperties": False},
}
APPLY_PATCH_GRAMMAR = ('start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
                       'end_patch: "*** End Patch" LF?')
APPLY_PATCH_TOOL = {
    "type": "custom", "name": "apply_patch", "description": "Use the `apply_patch` tool to edit files.",
    "format": {"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH_GRAMMAR},
}
MCP_NAMESPACE = {
    "type": "namespace", "name": "mcp__docs", "description": "Tools in the mcp__docs namespace.",
    "tools": [{"type": "function", "name": "search", "description": "Search the docs.", "strict": False,
               "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}],
}
WEB_SEARCH_TOOL = {"type": "web_search", "external_web_access": False}

PATCH = "*** Begin Patch\n*** Add File: notes.txt\n+hello\n*** End Patch\n"


def text_message(role: str, text: str) -> dict:
    return {"type": "message", "role": role, "content": [{"type": "input_text", "text": text}]}


def codex_request(**overrides) -> dict:
    body = {
        "model": "claude-sonnet",
        "instructions": "You are Codex, a coding agent running in the Codex CLI.",
        "input": [
            text_message("developer", "<permissions instructions>sandbox: off</permissions instructions>"),
            text_message("user", "<environment_context>\n  <cwd>/tmp/w</cwd>\n</environment_context>"),
            text_message("user", "Create notes.txt saying hello."),
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": SIGNED["thinking"]}],
             "encrypted_content": seal([SIGNED])},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Creating it."}]},
            {"type": "function_call", "name": "shell_command", "call_id": "call_1",
             "arguments": '{"command":"ls","workdir":"/tmp/w"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "Exit code: 0\nOutput:\n"},
            {"type": "custom_tool_call", "status": "completed", "call_id": "call_2", "name": "apply_patch",
             "input": PATCH},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Success. Updated: A notes.txt"},
            {"type": "function_call", "name": "search", "namespace": "mcp__docs", "call_id": "call_3",
             "arguments": '{"query":"notes"}'},
            {"type": "function_call_output", "call_id": "call_3",
             "output": [{"type": "input_text", "text": "no hits"}]},
        ],
        "tools": [SHELL_TOOL, PLAN_TOOL, APPLY_PATCH_TOOL, MCP_NAMESPACE, WEB_SEARCH_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a0b6-5e3c-7d30-9a43-4f0c1a2b3c4d",
        "text": {"verbosity": "low"},
        "client_metadata": {"x-codex-installation-id": "3f1c9a4e"},
    }
    body.update(overrides)
    return body


def chat_answer(message: dict, finish_reason: str = "stop", usage: dict | None = None) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "claude-sonnet",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": None, **message},
                         "finish_reason": finish_reason}],
            "usage": usage or {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
                               "prompt_tokens_details": {"cached_tokens": 100},
                               "completion_tokens_details": {"reasoning_tokens": 12}}}
