"""Acceptance: the real Claude Code and Codex CLIs (pinned, tests/clients/) complete a task that needs
one tool call through the gateway, against the sandbox provider, as a GitLab user, unattended and
with nothing leaving loopback (a trap proxy records any attempt).

- Claude Code `-p`, its default tools, to an Anthropic model (passed through: the beta header and
  the mid-conversation system message reach the provider untouched) and to OpenAI models
  (translated): one without a reasoning control, whose `drop_params` lists what Claude Code asks for
  that it cannot express, and one with `reasoning: effort`, which needs none.
- Codex `exec` to an OpenAI model (its /v1/responses passed through, every item and tool type
  untouched; the model Codex knows, and Codex's default model) and to an Anthropic model
  (translated through the chat pivot; `tools.web_search` in its `drop_params`).
- Both CLIs with nothing but the gateway configured (their default models), and on the other
  vendor's model, against `make run`'s config (config/example.yaml, its providers sandboxed as
  `make run` does): the example names the models the CLIs ask for and drops what they need dropped.

The sandbox provider scripts the tool call with a directive in the user's prompt
(`[[sandbox tool=NAME args={...}]]`) and answers "Sandbox reply: tool said <result>" once the
newest turn is the tool's result. The tool lists the task's working directory, which holds a file
whose name is the marker, so the answer proves the tool ran there. Only a machine without Node.js
18+ skips these.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest

from sandbox.gitlab import DEMO_TOKEN
from tests.clients import cli_tools
from tests.clients.capture import CaptureServer
from tests.harness import PROVIDER_KEY, Stack

pytestmark = pytest.mark.timeout(900)  # the first test may install the CLIs

# Model names: what each CLI asks for (Claude Code's default model; Codex's default model and one it
# has metadata for; a Claude name Codex has none for, so it uses its fallback request shape).
CLAUDE = "claude-opus-5-5"
CODEX_DEFAULT = "gpt-6.2-sol"
GPT = "gpt-5.5"
CLAUDE_FOR_CODEX = "claude-sonnet-4-5"
GPT_REASONING = "gpt-reasoning"
EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "example.yaml"

CONFIG = f"""
models:
  - name: {CLAUDE}
    type: anthropic
    base_url: "{{sandbox}}"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    # Its own id upstream: Claude Code sends no beta for the mid-conversation system message, which
    # Anthropic's current models take without one (the sandbox's beta check, sandbox/README.md).
    model: {CLAUDE}
    timeout: 60s
    workers: 1
  - name: {CLAUDE_FOR_CODEX}
    type: anthropic
    base_url: "{{sandbox}}"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: claude-upstream
    timeout: 60s
    workers: 1
    drop_params: [tools.web_search]
  - name: {GPT}
    type: openai
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: gpt-upstream
    timeout: 60s
    workers: 1
    # What Claude Code sends that an OpenAI model without a reasoning control cannot express
    # (tests/clients/fixtures/claude-code-*-say-hi-openai-model.json): its adaptive thinking and
    # effort. Its context_management edit only clears thinking, which the translation never sends
    # back, so it needs no drop. Passthrough drops nothing.
    drop_params: [thinking, output_config.effort]
  - name: {GPT_REASONING}
    type: openai
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: gpt-upstream
    timeout: 60s
    workers: 1
    reasoning: effort
  - name: {CODEX_DEFAULT}
    type: openai
    base_url: "{{sandbox}}/v1"
    api_key: "${{SANDBOX_PROVIDER_KEY}}"
    model: gpt-upstream
    timeout: 60s
    workers: 1
"""


@pytest.fixture(scope="module")
def clients() -> cli_tools.Clients:
    return cli_tools.require_clients()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, clients):
    with Stack(tmp_path_factory.mktemp("cli-stack"), CONFIG, web_workers=1, web_threads=16) as gateway:
        yield gateway


@pytest.fixture
def trap():
    """The CLIs' HTTPS_PROXY: records and refuses whatever would leave loopback."""
    with CaptureServer() as server:
        yield server
        assert server.egress() == [], "a CLI tried to reach a host outside loopback"


@pytest.fixture
def task(tmp_path):
    """A working directory holding a file named by a fresh marker, and the marker."""
    marker = f"cli-acceptance-{secrets.token_hex(4)}"
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / marker).write_text("")
    return workdir, marker


def prompt(tool: str, arguments: dict | str) -> str:
    # No whitespace inside the directive: its items are separated by spaces.
    return (f"List the files in the current directory with the tool and tell me what they are. "
            f"[[sandbox tool={tool} args={json.dumps(arguments, separators=(',', ':'))}]]")


def sandbox_calls(stack: Stack, path: str) -> list[dict]:
    return [entry for entry in stack.sandbox_log() if entry["path"] == path]


def session_records(stack: Stack, session: str, count: int) -> list[dict]:
    """The access records of one CLI session (Claude Code's X-Claude-Code-Session-Id, Codex's
    session-id), once ``count`` of them are written."""
    records = stack.access_records(lambda found: sum(r.get("session_id") == session for r in found) >= count,
                                   timeout=30)
    return [r for r in records if r.get("session_id") == session]


# --- Claude Code -------------------------------------------------------------------------------

def run_claude(stack: Stack, clients, trap, task, tmp_path, model: str | None) -> tuple[cli_tools.Run, dict]:
    """Claude Code's ``-p`` with its default tools completes the task in two turns: the Bash call the
    sandbox scripts, then the answer to its result. ``model`` None: Claude Code's default model."""
    workdir, marker = task
    run = cli_tools.run_claude(clients, prompt("Bash", {"command": "ls"}), base_url=stack.url, token=DEMO_TOKEN,
                               model=model, home=tmp_path / "home", workdir=workdir, proxy=trap.proxy_url,
                               timeout=240).check()
    result = run.result()
    assert result["is_error"] is False, run.describe()
    assert "tool said" in result["result"] and marker in result["result"], run.describe()
    assert result["num_turns"] == 2
    return run, result


def test_claude_code_to_an_anthropic_model(stack, clients, trap, task, tmp_path):
    before = len(sandbox_calls(stack, "/v1/messages"))
    run, result = run_claude(stack, clients, trap, task, tmp_path, CLAUDE)
    calls = sandbox_calls(stack, "/v1/messages")[before:]
    assert len(calls) == 2  # the tool call, then the answer to its result
    for call in calls:  # passthrough: Claude Code's betas and body reach the provider as it sent them
        assert "claude-code-20250219" in call["headers"].get("anthropic-beta", "")
        assert call["headers"].get("anthropic-version") == "2023-06-01"
        body = call["body"]
        assert body["model"] == CLAUDE and body["thinking"]["type"] == "adaptive"
        assert "context_management" in body and "output_config" in body
        assert "system" in [message["role"] for message in body["messages"]]  # mid-conversation
    records = session_records(stack, result["session_id"], 2)  # sent as X-Claude-Code-Session-Id
    assert all(r["status"] == 200 and r["path"] == "/v1/messages?beta=true" for r in records), records
    assert not any(r.get("dropped_params") for r in records)


def test_claude_code_to_an_openai_model_with_drop_params(stack, clients, trap, task, tmp_path):
    before = len(sandbox_calls(stack, "/v1/chat/completions"))
    run, result = run_claude(stack, clients, trap, task, tmp_path, GPT)
    calls = sandbox_calls(stack, "/v1/chat/completions")[before:]
    assert len(calls) == 2  # translated to chat
    assert not any("reasoning_effort" in call["body"] for call in calls)
    records = session_records(stack, result["session_id"], 2)
    assert [r.get("dropped_params") for r in records] == [["thinking", "output_config.effort"]] * 2


def test_claude_code_to_an_openai_reasoning_model_needs_no_drop(stack, clients, trap, task, tmp_path):
    # `reasoning: effort`: Claude Code's adaptive thinking at its output_config.effort becomes reasoning_effort.
    before = len(sandbox_calls(stack, "/v1/chat/completions"))
    run, result = run_claude(stack, clients, trap, task, tmp_path, GPT_REASONING)
    calls = sandbox_calls(stack, "/v1/chat/completions")[before:]
    assert len(calls) == 2
    assert all(call["body"].get("reasoning_effort") in ("low", "medium", "high", "xhigh", "max") for call in calls)
    records = session_records(stack, result["session_id"], 2)
    assert not any(r.get("dropped_params") for r in records), records


# --- Codex -------------------------------------------------------------------------------------

def run_codex(stack: Stack, clients, trap, task, tmp_path, model: str | None, tool: str,
              arguments) -> cli_tools.Run:
    """Codex's ``exec`` runs the tool call the sandbox scripts (a shell command listing the task's
    directory) and answers with its result. ``model`` None: Codex's default model."""
    workdir, marker = task
    run = cli_tools.run_codex(clients, prompt(tool, arguments), base_url=stack.url + "/v1", token=DEMO_TOKEN,
                              model=model, home=tmp_path / "home", workdir=workdir, proxy=trap.proxy_url,
                              timeout=240).check()
    commands = run.items("command_execution")
    assert [c["exit_code"] for c in commands] == [0], run.describe()
    assert marker in commands[0]["aggregated_output"]
    answer = run.items("agent_message")[-1]["text"]
    assert "tool said" in answer and marker in answer, run.describe()
    assert run.events()[-1]["type"] == "turn.completed"
    return run


def codex_session(run: cli_tools.Run) -> str:
    """The thread id Codex prints first, which it also sends as its session-id header."""
    return next(event["thread_id"] for event in run.events() if event.get("type") == "thread.started")


# Codex's default models are "code mode" ones: their only tool is `exec` (a custom tool whose input is
# JavaScript), sent in an `additional_tools` input item. No whitespace in it, as in any directive.
CODEX_EXEC_SCRIPT = 'text(await(tools.exec_command({cmd:"ls"})))'


def test_codex_to_an_openai_model(stack, clients, trap, task, tmp_path):
    before = len(sandbox_calls(stack, "/v1/responses"))
    run = run_codex(stack, clients, trap, task, tmp_path, GPT, "exec_command", {"cmd": "ls"})
    calls = sandbox_calls(stack, "/v1/responses")[before:]
    assert len(calls) == 2  # passed through, not translated
    assert any(tool.get("type") == "web_search" for tool in calls[0]["body"]["tools"])  # untouched
    records = session_records(stack, codex_session(run), 2)
    assert not any(r.get("dropped_params") for r in records)


def test_codex_default_model_to_an_openai_model(stack, clients, trap, task, tmp_path):
    before = len(sandbox_calls(stack, "/v1/responses"))
    run_codex(stack, clients, trap, task, tmp_path, None, "exec", CODEX_EXEC_SCRIPT)
    calls = sandbox_calls(stack, "/v1/responses")[before:]
    assert len(calls) == 2
    assert calls[0]["body"]["model"] == "gpt-upstream"
    assert any(item.get("type") == "additional_tools" for item in calls[0]["body"]["input"])  # passed through


def test_codex_to_an_anthropic_model_with_web_search_dropped(stack, clients, trap, task, tmp_path):
    before = len(sandbox_calls(stack, "/v1/messages"))
    run = run_codex(stack, clients, trap, task, tmp_path, CLAUDE_FOR_CODEX, "exec_command", {"cmd": "ls"})
    assert len(sandbox_calls(stack, "/v1/messages")[before:]) == 2  # translated through the chat pivot
    records = session_records(stack, codex_session(run), 2)
    assert [r.get("dropped_params") for r in records] == [["tools.web_search"]] * 2


# --- make run's config (config/example.yaml) ---------------------------------------------------

@pytest.fixture(scope="module")
def example(tmp_path_factory, clients):
    """The gateway with config/example.yaml, its providers the sandbox as `make run` makes them when no
    provider key is set (tools/run.py), one worker process per model."""
    config = re.sub(r"\$\{(?:OPENAI|ANTHROPIC)_BASE_URL:-[^}]*\}", "{sandbox}/v1", EXAMPLE_CONFIG.read_text())
    env = {"OPENAI_API_KEY": PROVIDER_KEY, "ANTHROPIC_API_KEY": PROVIDER_KEY, "WORKER_PROCESSES": "1"}
    with Stack(tmp_path_factory.mktemp("example-stack"), config, env=env) as gateway:
        yield gateway


def test_example_config_serves_claude_codes_default_model(example, clients, trap, task, tmp_path):
    before = len(sandbox_calls(example, "/v1/messages"))
    run_claude(example, clients, trap, task, tmp_path, None)
    assert [call["body"]["model"] for call in sandbox_calls(example, "/v1/messages")[before:]] == \
        ["claude-opus-5-5"] * 2


def test_example_config_serves_codexs_default_model(example, clients, trap, task, tmp_path):
    before = len(sandbox_calls(example, "/v1/responses"))
    run_codex(example, clients, trap, task, tmp_path, None, "exec", CODEX_EXEC_SCRIPT)
    assert [call["body"]["model"] for call in sandbox_calls(example, "/v1/responses")[before:]] == \
        ["gpt-6.2-sol"] * 2


def test_example_config_serves_claude_code_on_gpt_4o(example, clients, trap, task, tmp_path):
    run, result = run_claude(example, clients, trap, task, tmp_path, "gpt-4o")
    records = session_records(example, result["session_id"], 2)
    assert [r.get("dropped_params") for r in records] == [["thinking", "output_config.effort"]] * 2


def test_example_config_serves_codex_on_claude_sonnet(example, clients, trap, task, tmp_path):
    run = run_codex(example, clients, trap, task, tmp_path, "claude-sonnet", "exec_command", {"cmd": "ls"})
    records = session_records(example, codex_session(run), 2)
    assert [r.get("dropped_params") for r in records] == [["tools.web_search"]] * 2
