"""Record what the pinned CLIs send, against the capture server, into ``tests/clients/fixtures/``.

    .venv/bin/python -m tests.clients.record [--only NAME ...] [--slow] [--out DIR]

Each scenario writes ``<cli>-<version>-<scenario>.json``: the command and environment (token
redacted), what the CLI printed, and every request it sent (method, path with query, headers with
credentials redacted, body), with the capture server's answer status and the time since the first
request (a later request's body fields equal to the first's are references to it). Fault scenarios
keep a digest of each request (its small top-level fields) instead of the whole body. Paths of the
run's home and of the install, and the capture server's port, are replaced by placeholders.
``--slow`` adds Claude Code's answer to a 401 (about three minutes of retries).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.clients import cli_tools
from tests.clients.capture import CaptureServer, ToolCall

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKEN = "glpat-capture-token-0123456789"
CLAUDE_PROMPT_TOOL = "Run the shell command `echo tool-ran-ok` and tell me what it printed."
CLAUDE_TOOL = ToolCall("Bash", {"command": "echo tool-ran-ok", "description": "Print a marker"})
# Codex's default models are "code mode" ones: their only tool is `exec`, JavaScript that calls the others.
CODEX_EXEC_TOOL = ToolCall("exec", 'const r = await tools.exec_command({cmd: "echo tool-ran-ok"}); text(r);')
CODEX_SHELL_TOOL = ToolCall("exec_command", {"cmd": "echo tool-ran-ok"})
BULKY = ("messages", "system", "tools", "input", "instructions", "metadata", "client_metadata")


@dataclass
class Scenario:
    name: str
    cli: str  # claude | codex
    description: str
    prompt: str = "say hi"
    model: str | None = None
    tool_call: ToolCall | None = None
    fault: tuple | None = None  # CaptureServer.fail's arguments: (path, status, times[, headers])
    omit_events: frozenset = frozenset()
    stream_failure: str | None = None
    extra_env: dict = field(default_factory=dict)
    whole: bool = True  # keep whole bodies (else a digest of each request)
    timeout: float = 120
    slow: bool = False


SCENARIOS = [
    # --- Claude Code ---
    Scenario("say-hi", "claude", "claude -p 'say hi' with no ANTHROPIC_MODEL: Claude Code's default model"),
    Scenario("say-hi-openai-model", "claude", "claude -p 'say hi' with ANTHROPIC_MODEL=gpt-4o (a model name "
             "Claude Code does not know, as when it is pointed at a gateway's OpenAI model)", model="gpt-4o"),
    Scenario("tool", "claude", "claude -p with a prompt the capture server answers with a Bash tool call, then "
             "the final answer after the tool result", prompt=CLAUDE_PROMPT_TOOL, tool_call=CLAUDE_TOOL),
    Scenario("model-discovery", "claude", "CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1: a model list first",
             extra_env={"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}, whole=False),
    Scenario("on-404", "claude", "every /v1/messages answered 404", fault=("/v1/messages", 404, 1000), whole=False),
    Scenario("on-400", "claude", "every /v1/messages answered 400 (a message naming nothing)",
             fault=("/v1/messages", 400, 1000), whole=False),
    Scenario("on-429-once", "claude", "the first /v1/messages answered 429, no Retry-After",
             fault=("/v1/messages", 429, 1), whole=False),
    Scenario("on-429-retry-after", "claude", "the first two /v1/messages answered 429 with Retry-After: 3",
             fault=("/v1/messages", 429, 2, {"Retry-After": "3"}), whole=False),
    Scenario("on-503-twice", "claude", "the first two /v1/messages answered 503", fault=("/v1/messages", 503, 2),
             whole=False),
    Scenario("on-401", "claude", "every /v1/messages answered 401", fault=("/v1/messages", 401, 1000),
             whole=False, timeout=400, slow=True),
    Scenario("on-stream-error", "claude", "every stream ends after message_start, content_block_start and ping "
             "with an `error` event", stream_failure="error", whole=False),
    Scenario("without-content-block-stop", "claude", "tool call streamed without content_block_stop",
             prompt=CLAUDE_PROMPT_TOOL, tool_call=CLAUDE_TOOL, omit_events=frozenset({"content_block_stop"}),
             whole=False),
    Scenario("without-message-delta-and-stop", "claude", "streams without message_delta and message_stop "
             "(either one alone is enough); run stopped after 15 s", omit_events=frozenset(
                 {"message_delta", "message_stop"}), whole=False, timeout=15),
    # --- Codex ---
    Scenario("say-hi", "codex", "codex exec 'say hi' with no model in config.toml: Codex's default model (a "
             "'responses-lite' model: tools in an additional_tools input item)"),
    Scenario("tool", "codex", "codex exec, default model, answered with a call of its `exec` custom tool "
             "(JavaScript calling exec_command), then the final answer", prompt=CLAUDE_PROMPT_TOOL,
             tool_call=CODEX_EXEC_TOOL),
    Scenario("say-hi-unknown-model", "codex", "codex exec 'say hi' with model = claude-sonnet-4-5, a name Codex "
             "has no metadata for (as when pointed at a gateway's Anthropic model): its fallback request shape",
             model="claude-sonnet-4-5"),
    Scenario("tool-unknown-model", "codex", "codex exec, unknown model, answered with an exec_command function "
             "call, then the final answer", prompt=CLAUDE_PROMPT_TOOL, model="claude-sonnet-4-5",
             tool_call=CODEX_SHELL_TOOL),
    Scenario("say-hi-gpt-5.5", "codex", "codex exec 'say hi' with model = gpt-5.5, a model Codex knows that is "
             "not 'responses-lite'", model="gpt-5.5"),
    Scenario("on-404", "codex", "every /v1/responses answered 404", fault=("/v1/responses", 404, 1000), whole=False),
    Scenario("on-400", "codex", "every /v1/responses answered 400", fault=("/v1/responses", 400, 1000), whole=False),
    Scenario("on-401", "codex", "every /v1/responses answered 401", fault=("/v1/responses", 401, 1000), whole=False),
    Scenario("on-429", "codex", "every /v1/responses answered 429, no Retry-After",
             fault=("/v1/responses", 429, 1000), whole=False),
    Scenario("on-429-retry-after", "codex", "the first two /v1/responses answered 429 with Retry-After: 3",
             fault=("/v1/responses", 429, 2, {"Retry-After": "3"}), whole=False),
    Scenario("on-503-twice", "codex", "the first two /v1/responses answered 503", fault=("/v1/responses", 503, 2),
             whole=False),
    Scenario("on-response-failed", "codex", "every stream ends after three events with response.failed "
             "(code server_error)", stream_failure="response.failed", whole=False),
    Scenario("on-stream-error", "codex", "every stream ends after three events with an `error` event",
             stream_failure="error", whole=False),
    Scenario("without-response-completed", "codex", "tool call streamed without response.completed",
             prompt=CLAUDE_PROMPT_TOOL, tool_call=CODEX_EXEC_TOOL,
             omit_events=frozenset({"response.completed"}), whole=False),
    Scenario("without-output-item-done", "codex", "tool call streamed without response.output_item.done",
             prompt=CLAUDE_PROMPT_TOOL, tool_call=CODEX_EXEC_TOOL,
             omit_events=frozenset({"response.output_item.done"}), whole=False),
]


def scrub(value, replacements: list[tuple[str, str]]):
    """``value`` with each (needle, placeholder) replaced in every string, keys included."""
    if isinstance(value, str):
        for needle, placeholder in replacements:
            value = value.replace(needle, placeholder)
        return value
    if isinstance(value, list):
        return [scrub(item, replacements) for item in value]
    if isinstance(value, dict):
        return {scrub(k, replacements): scrub(v, replacements) for k, v in value.items()}
    return value


def digest(request: dict) -> dict:
    """A request without its bulky body fields (counted instead)."""
    body = request.get("body")
    summary = None
    if isinstance(body, dict):
        summary = {k: v for k, v in body.items() if k not in BULKY}
        for key in BULKY:
            if isinstance(body.get(key), list):
                summary[f"{key}#"] = len(body[key])
        if isinstance(body.get("messages"), list):
            summary["roles"] = [m.get("role") for m in body["messages"] if isinstance(m, dict)]
        if isinstance(body.get("tools"), list):
            summary["tool_names"] = [t.get("name") or t.get("type") for t in body["tools"] if isinstance(t, dict)]
    keep = ("anthropic-beta", "user-agent", "x-stainless-retry-count", "anthropic-version")
    headers = [h for h in request["headers"] if h[0].lower() in keep]
    return {"method": request["method"], "target": request["target"], "status": request.get("status"),
            "t": request["t"], "headers": headers, "body": summary}


def dedupe(requests: list[dict]) -> list[dict]:
    """Later requests' body fields (and list items) equal to the first request's, as references to it:
    a tool round trip's second request repeats the system prompt and tool definitions."""
    if not requests or not isinstance(requests[0].get("body"), dict):
        return requests
    first = requests[0]["body"]
    for request in requests[1:]:
        body = request.get("body")
        if not isinstance(body, dict):
            continue
        for key, value in body.items():
            if key not in first:
                continue
            if value == first[key]:
                body[key] = f"<same as requests[0].body.{key}>"
            elif isinstance(value, list) and isinstance(first[key], list):
                body[key] = [f"<same as requests[0].body.{key}[{i}]>" if i < len(first[key]) and item == first[key][i]
                             else item for i, item in enumerate(value)]
    return requests


def run_scenario(scenario: Scenario, clients: cli_tools.Clients, directory: Path) -> dict:
    home = directory / f"{scenario.cli}-{scenario.name}"
    with CaptureServer(scenario.tool_call, token=TOKEN, omit_events=scenario.omit_events,
                       stream_failure=scenario.stream_failure) as server:
        if scenario.fault:
            server.fail(*scenario.fault)
        common = dict(token=TOKEN, model=scenario.model, home=home, proxy=server.proxy_url,
                      extra_env=scenario.extra_env, timeout=scenario.timeout)
        if scenario.cli == "claude":
            run = cli_tools.run_claude(clients, scenario.prompt, base_url=server.base_url, **common)
        else:
            run = cli_tools.run_codex(clients, scenario.prompt, base_url=server.base_url + "/v1", **common)
        requests = server.requests()
        base_url = server.base_url
    start = requests[0]["time"] if requests else 0.0
    for request in requests:
        request["t"] = round(request.pop("time", start) - start, 2)
    version = cli_tools.CLAUDE_CODE_VERSION if scenario.cli == "claude" else cli_tools.CODEX_VERSION
    env = {k: v for k, v in run.env.items() if k not in cli_tools.INHERITED_ENV}
    record = {
        "cli": "claude-code" if scenario.cli == "claude" else "codex",
        "version": version,
        "scenario": scenario.name,
        "description": scenario.description,
        "recorded": datetime.date.today().isoformat(),
        "argv": [Path(run.argv[0]).name] + run.argv[1:],
        "env": env,
        "config_toml": (home / ".codex" / "config.toml").read_text() if scenario.cli == "codex" else None,
        "exit_code": run.returncode,
        "timed_out": run.timed_out,
        "seconds": round(run.seconds, 1),
        "stdout": run.stdout[-20000:],
        "stderr": run.stderr[-5000:],
        "requests": dedupe([r for r in requests if not r.get("proxied")]) if scenario.whole else [
            digest(r) for r in requests if not r.get("proxied")],
        "left_loopback": [r["target"] for r in requests if r.get("proxied")],
    }
    replacements = [(TOKEN, "<redacted>"), (str(home), "<home>"), (str(clients.directory), "<clients>"),
                    (base_url, "http://<capture>"), (base_url.split("//")[1], "<capture>")]
    return scrub(record, replacements)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.clients.record", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", help="scenario names (cli-name, e.g. claude-tool)")
    parser.add_argument("--slow", action="store_true", help="include scenarios that take minutes")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args(argv)
    problem = cli_tools.node_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    clients = cli_tools.installed()
    args.out.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="aigw-cli-record-"))
    try:
        for scenario in SCENARIOS:
            key = f"{scenario.cli}-{scenario.name}"
            if (args.only and key not in args.only) or (scenario.slow and not args.slow and not args.only):
                continue
            record = run_scenario(scenario, clients, directory)
            path = args.out / f"{record['cli']}-{record['version']}-{scenario.name}.json"
            path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
            print(f"{path.name}: exit {record['exit_code']}, {len(record['requests'])} requests, "
                  f"{record['seconds']}s, left loopback: {record['left_loopback'] or 'nothing'}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
