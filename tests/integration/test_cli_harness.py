"""The harness that runs the real Claude Code and Codex CLIs (tests/clients/) works: the pinned
versions install and run, and each CLI completes a turn and a tool call round trip against the
capture server, unattended, with the GitLab token it was given and nothing leaving loopback.

Only a machine without Node.js 18+ skips these; a failed install fails them."""

from __future__ import annotations

import json

import pytest

from tests.clients import cli_tools
from tests.clients.capture import CaptureServer, ToolCall

# The first test to ask for the CLIs installs them (npm ci: tens of seconds cold, nothing warm).
pytestmark = pytest.mark.timeout(900)

TOKEN = "glpat-harness-selftest-0123456789"
MARKER = "harness-tool-ran-ok"
TOOL_PROMPT = f"Run the shell command `echo {MARKER}` and tell me what it printed."


@pytest.fixture(scope="module")
def clients() -> cli_tools.Clients:
    return cli_tools.require_clients()


def test_pinned_versions_agree_with_the_npm_lock():
    package = json.loads((cli_tools.NPM_DIR / "package.json").read_text())
    lock = json.loads((cli_tools.NPM_DIR / "package-lock.json").read_text())
    pins = {"@anthropic-ai/claude-code": cli_tools.CLAUDE_CODE_VERSION, "@openai/codex": cli_tools.CODEX_VERSION}
    assert package["dependencies"] == pins
    assert lock["packages"][""]["dependencies"] == pins
    for name, version in pins.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    # npm ci checks every tarball against these
    assert all(entry.get("integrity", "").startswith("sha512-") for path, entry in lock["packages"].items() if path)


def test_each_cli_prints_its_pinned_version(clients, tmp_path):
    claude = cli_tools.version(clients, "claude", tmp_path / "claude").check()
    assert claude.stdout.split()[0] == cli_tools.CLAUDE_CODE_VERSION
    codex = cli_tools.version(clients, "codex", tmp_path / "codex").check()
    assert codex.stdout.strip() == f"codex-cli {cli_tools.CODEX_VERSION}"


def model_calls(server: CaptureServer) -> list[dict]:
    assert server.egress() == [], "a CLI tried to reach a host outside loopback"
    return server.requests()


def header(request: dict, name: str) -> str | None:
    return next((value for key, value in request["headers"] if key.lower() == name.lower()), None)


def test_claude_code_says_hi(clients, tmp_path):
    with CaptureServer(token=TOKEN) as server:
        run = cli_tools.run_claude(clients, "say hi", base_url=server.base_url, token=TOKEN,
                                   model="claude-opus-5-5", home=tmp_path, proxy=server.proxy_url).check()
        calls = model_calls(server)
    result = run.result()
    assert (result["is_error"], result["result"]) == (False, "hi")
    assert [(c["method"], c["target"]) for c in calls] == [("POST", "/v1/messages?beta=true")]
    assert header(calls[0], "Authorization") == "Bearer <redacted>"  # the capture server checked the token
    assert calls[0]["body"]["model"] == "claude-opus-5-5"
    assert calls[0]["body"]["stream"] is True


def test_claude_code_runs_a_tool_unattended(clients, tmp_path):
    tool = ToolCall("Bash", {"command": f"echo {MARKER}", "description": "Print a marker"})
    with CaptureServer(tool, token=TOKEN) as server:
        run = cli_tools.run_claude(clients, TOOL_PROMPT, base_url=server.base_url, token=TOKEN,
                                   model="claude-opus-5-5", home=tmp_path, proxy=server.proxy_url).check()
        calls = model_calls(server)
    assert run.result()["result"] == f"Tool said: {MARKER}"
    assert len(calls) == 2
    answered = calls[1]["body"]["messages"][-1]["content"]
    assert [(b["type"], b["tool_use_id"], b["content"]) for b in answered] == [
        ("tool_result", "toolu_capture_1", MARKER)]


def test_codex_says_hi(clients, tmp_path):
    with CaptureServer(token=TOKEN) as server:
        run = cli_tools.run_codex(clients, "say hi", base_url=server.base_url + "/v1", token=TOKEN,
                                  model="gpt-5.5", home=tmp_path, proxy=server.proxy_url).check()
        calls = model_calls(server)
    assert [m["text"] for m in run.items("agent_message")] == ["hi"]
    assert run.events()[-1]["type"] == "turn.completed"
    assert [(c["method"], c["target"]) for c in calls] == [("POST", "/v1/responses")]
    assert header(calls[0], "Authorization") == "Bearer <redacted>"
    assert calls[0]["body"]["model"] == "gpt-5.5"


def test_codex_runs_a_tool_unattended(clients, tmp_path):
    tool = ToolCall("exec_command", {"cmd": f"echo {MARKER}"})
    with CaptureServer(tool, token=TOKEN) as server:
        run = cli_tools.run_codex(clients, TOOL_PROMPT, base_url=server.base_url + "/v1", token=TOKEN,
                                  model="gpt-5.5", home=tmp_path, proxy=server.proxy_url).check()
        calls = model_calls(server)
    commands = run.items("command_execution")
    assert [(c["exit_code"], c["aggregated_output"]) for c in commands] == [(0, f"{MARKER}\n")]
    assert MARKER in run.items("agent_message")[-1]["text"]
    assert len(calls) == 2
    output = calls[1]["body"]["input"][-1]
    assert (output["type"], output["call_id"]) == ("function_call_output", "call_capture_1")
    assert MARKER in output["output"]
