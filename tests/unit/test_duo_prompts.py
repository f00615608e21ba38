"""GitLab Duo's pure parts: the config's feature keys and prompt overrides, which model serves a
request, the prompts a request becomes (api.duo.jobs, shared.duo_prompts), the answers re-told in
GitLab's formats (api.duo.shapes) and the model check's reading of a provider's failure."""

from __future__ import annotations

import json

import pytest
from redis.exceptions import RedisError

from api.duo import jobs
from api.duo.model_errors import DuoModelServerError, model_server_error
from api.duo.models import DuoInvalid, DuoModelUnmapped, mapped_model
from api.duo.shapes import ChatEvents, CodeSuggestionEvents, RawText, answer_text, whole_chat_answer
from shared.breaker import COOLING, FAILED, DeploymentState
from shared.config import parse_config
from shared.config_types import DuoModelPrompts
from shared.duo_prompts import fim_family, language_of, render, template_problem
from shared.errors import (
    ContextLengthExceeded,
    DeadlineExceeded,
    DeploymentsUnavailable,
    UpstreamAuthError,
    UpstreamError,
    UpstreamRateLimited,
)
from shared.jobs import CHAT_COMPLETIONS, COMPLETIONS
from shared.rq_records import ENQUEUE_FRONT_LUA, ENQUEUE_LUA
from tests.unit.config_fixtures import config_with, problems

MODELS = [{"name": "local", "type": "generic", "base_url": "http://127.0.0.1:9/v1"},
          {"name": "claude", "type": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "k"}]


def config(**duo):
    return parse_config({"models": MODELS, "duo": duo}, {})


# -- the config ------------------------------------------------------------------------------------
def test_features_and_prompt_overrides_are_read() -> None:
    read = config(code_completions="local", duo_chat="claude",
                  prompts={"local": {"family": "qwen2p5-coder-7b", "fim_suffix": True,
                                     "chat_system": "Be brief. Not here: $unavailable_resources"}})
    assert read.duo.features == {"code_completions": "local", "duo_chat": "claude"}
    prompts = read.duo.prompts_for("local")
    assert prompts.family == "qwen2.5-coder" and prompts.fim_suffix is True
    assert prompts.templates == {"chat_system": "Be brief. Not here: $unavailable_resources"}
    assert read.duo.prompts_for("claude") == DuoModelPrompts()


def test_bad_feature_keys_and_templates_are_named_by_their_path() -> None:
    found = problems(config_with(duo={"code_generations": "nope", "prompts": {
        "local": {"family": "gpt", "colour": 1, "fim": "$prefix$nonsense", "tool_user": "$ 5",
                   "generation_user": 7}}}))
    assert "duo.code_generations: names no configured model: 'nope'" in found
    assert any(p.startswith("duo.prompts.local.family: must be a fill-in-the-middle family") for p in found), found
    assert "duo.prompts.local.colour: unknown key" in found
    assert any(p.startswith("duo.prompts.local.fim: names $nonsense") for p in found), found
    assert any(p.startswith("duo.prompts.local.tool_user: is not a valid template") for p in found), found
    assert any(p.startswith("duo.prompts.local.generation_user: must be a string") for p in found), found
    assert problems(config_with(duo={"prompts": {"nope": {}}})) == ["duo.prompts.nope: names no configured model"]


def test_templates_fill_verbatim_and_leave_unknown_names() -> None:
    assert render("$prefix|$suffix|$other", {"prefix": "a $suffix b", "suffix": "${x}"}) == "a $suffix b|${x}|$other"
    assert template_problem("tool_user", "$anything $input") is None  # a tool's inputs are open-ended
    assert template_problem("fim", "$prefix$$") is None


def test_families_and_languages() -> None:
    assert fim_family("Codestral") == "codestral" and fim_family("codestral-2501") == "codestral"
    assert fim_family("mistral") is None and fim_family(True) is None and fim_family(None) is None
    assert language_of("a/b/main.PY") == "Python" and language_of("Makefile") == ""


# -- which model -------------------------------------------------------------------------------------
def test_model_by_feature_then_identifier_then_name() -> None:
    read = config(code_completions="claude")
    assert mapped_model(read, "code_completions", name="local", identifier="custom_openai/local").name == "claude"
    assert mapped_model(read, "duo_chat", name="x", identifier="custom_openai/local").name == "local"
    assert mapped_model(read, "duo_chat", name="claude", identifier="bedrock/unknown").name == "claude"
    with pytest.raises(DuoModelUnmapped) as refused:
        mapped_model(read, "duo_chat", name="mistral", identifier="custom_openai/Mistral-7B")
    assert refused.value.status == 422 and "duo.duo_chat" in refused.value.message


# -- the prompts ---------------------------------------------------------------------------------------
def completion_body(**extra) -> dict:
    return {"current_file": {"file_name": "main.py", "content_above_cursor": "def f(", "content_below_cursor": ")\n"},
            "model_name": "codellama", "prompt": None, "model_api_key": "secret", "model_endpoint": "http://x", **extra}


def test_completion_is_fim_for_a_fim_family_on_a_completions_model() -> None:
    read = config()
    job = jobs.completion(completion_body(), read.model("local"), DuoModelPrompts())
    assert job.endpoint == COMPLETIONS
    assert job.body["prompt"] == "<PRE> def f( <SUF> )\n <MID>" and "<EOT>" in job.body["stop"]
    assert "secret" not in json.dumps(job.body) and "http://x" not in json.dumps(job.body)
    sent_17x = jobs.completion(completion_body(prompt="<PRE> built by GitLab"), read.model("local"), DuoModelPrompts())
    assert sent_17x.body["prompt"] == "<PRE> built by GitLab"
    suffix = jobs.completion(completion_body(), read.model("local"), DuoModelPrompts(fim_suffix=True))
    assert (suffix.body["prompt"], suffix.body["suffix"]) == ("def f(", ")\n")
    own = jobs.completion(completion_body(), read.model("local"),
                          DuoModelPrompts(templates={"fim": "$suffix//$prefix"}))
    assert own.body["prompt"] == ")\n//def f("


def test_completion_is_a_chat_prompt_for_anthropic_and_for_families_without_fim() -> None:
    read = config()
    for model, name in (("claude", "codellama"), ("local", "mistral")):
        job = jobs.completion(completion_body(model_name=name, stream=True), read.model(model), DuoModelPrompts())
        assert job.endpoint == CHAT_COMPLETIONS and job.body["stream"] is True
        assert "Python code" in job.body["messages"][0]["content"]
        assert job.body["messages"][1]["content"] == "<prefix>\ndef f(\n</prefix>\n\n<suffix>\n)\n\n</suffix>"


def test_completion_refuses_what_the_prompt_needs() -> None:
    with pytest.raises(DuoInvalid) as refused:
        jobs.completion({"current_file": {"file_name": "a.py"}}, config().model("local"), DuoModelPrompts())
    assert refused.value.param == "current_file.content_above_cursor"
    with pytest.raises(DuoInvalid):
        jobs.completion(completion_body(stream="yes"), config().model("local"), DuoModelPrompts())


def test_generation_uses_the_prompt_component_and_its_context() -> None:
    payload = {"file_name": "app.rb", "content_above_cursor": "class A\n", "content_below_cursor": "end\n",
               "prompt_enhancer": {"user_instruction": "add a method",
                                   "related_files": ["<file_content>x</file_content>\n"],
                                   "related_snippets": ["<snippet_content>y</snippet_content>\n"],
                                   "libraries": ["rails"]}}
    job = jobs.generation({"prompt_components": [{"type": "code_editor_generation", "payload": payload}]},
                          config().model("local"), DuoModelPrompts())
    system, user = (m["content"] for m in job.body["messages"])
    assert "Ruby code inside the file 'app.rb'" in system
    assert "<related_files>" in system and "<related_snippets>" in system and "rails" in system
    assert "class A\n{{cursor}}end\n" in user and "add a method" in user
    with pytest.raises(DuoInvalid):
        jobs.generation({"prompt_components": {}}, config().model("local"), DuoModelPrompts())


def test_chat_keeps_history_and_puts_the_context_with_the_question() -> None:
    body = {"messages": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "answer"},
                         {"role": "user", "content": "second", "context": {"type": "merge_request", "title": "MR 1"},
                          "current_file": {"file_path": "a.py", "data": "x = 1", "selected_code": True},
                          "additional_context": [{"category": "file", "id": "b.py", "content": "y = 2"}]},
                         {"role": "assistant", "agent_scratchpad": [{"action": {}, "observation": "..."}]}],
            "unavailable_resources": ["Pipelines"]}
    job = jobs.chat(body, config().model("local"), DuoModelPrompts(templates={
        "chat_system": "Unavailable: $unavailable_resources"}))
    roles = [m["role"] for m in job.body["messages"]]
    assert roles == ["system", "user", "assistant", "user"] and job.body["stream"] is True
    assert job.body["messages"][0]["content"] == "Unavailable: Pipelines"
    last = job.body["messages"][-1]["content"]
    assert "MR 1" in last and "x = 1" in last and "y = 2" in last and last.endswith("second")
    with pytest.raises(DuoInvalid):
        jobs.chat({"messages": [{"role": "assistant", "content": "no question"}]}, config().model("local"),
                  DuoModelPrompts())


def test_a_tool_fills_its_template_with_gitlabs_inputs() -> None:
    job = jobs.tool({"inputs": {"input": "Explain", "selected_text": "42", "extra": ["x"]}},
                    config().model("local"), DuoModelPrompts(templates={"tool_user": "$input: $selected_text $extra"}),
                    "explain_code")
    assert job.body["messages"][1]["content"] == 'Explain: 42 ["x"]' and job.body["stream"] is False


# -- the answers ---------------------------------------------------------------------------------------------
def chat_chunk(*texts: str, finish: str | None = None) -> bytes:
    return b"".join(b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": t},
                                                         "finish_reason": finish}]}).encode() + b"\n\n"
                    for t in texts)


def test_chat_events_are_one_json_object_per_line_whatever_the_text_holds() -> None:
    shape = ChatEvents(CHAT_COMPLETIONS)
    out = shape.chunk(chat_chunk("line one\nline two", '{"x": "}\n"}')) + shape.chunk(b"data: [DONE]\n\n") + shape.end()
    lines = out.decode().split("\n")
    assert lines[-1] == ""
    events = [json.loads(line) for line in lines[:-1]]
    assert [e["data"]["text"] for e in events] == ["line one\nline two", '{"x": "}\n"}', ""]
    assert events[-1]["data"]["finish_reason"] == "stop"
    failure = shape.failure(UpstreamError("prompt is too long"))
    assert json.loads(failure) == {"type": "error", "data": {"message": "prompt is too long", "retryable": False}}
    assert failure.count(b"\n") == 1
    assert whole_chat_answer("").count(b"\n") == 1
    openai_words = "This model's maximum context length is 50 tokens."  # GitLab looks for Anthropic's words
    too_long = json.loads(shape.failure(ContextLengthExceeded(openai_words)))["data"]["message"]
    assert too_long == f"prompt is too long: {openai_words}"
    anthropic_words = "prompt is too long: 80 tokens > 50 maximum"
    assert json.loads(shape.failure(ContextLengthExceeded(anthropic_words)))["data"]["message"] == anthropic_words


def test_raw_text_has_no_framing_no_keepalive_and_no_failure_text() -> None:
    shape = RawText(COMPLETIONS)
    chunk = b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[{"text":"b\\n"}]}\n\ndata: [DONE]\n\n'
    assert shape.chunk(chunk) == b"ab\n"
    assert shape.keepalive() is None and shape.failure(DeadlineExceeded()) is None and shape.end() == b""


def test_code_suggestion_events_start_chunk_and_end() -> None:
    shape = CodeSuggestionEvents(CHAT_COMPLETIONS, "local", "a.go")
    first = shape.chunk(chat_chunk("x"))
    assert first.startswith(b"event: stream_start\ndata: {") and b'"lang":"go"' in first
    assert b'event: content_chunk\ndata: {"choices":[{"delta":{"content":"x"},"index":0}]}\n\n' in first
    assert shape.chunk(chat_chunk("")) == b""  # an empty delta is no event
    assert shape.end() == b"event: stream_end\ndata: null\n\n"
    assert CodeSuggestionEvents(CHAT_COMPLETIONS, "m", None).end().startswith(b"event: stream_start")


def test_answer_text_of_whole_answers() -> None:
    assert answer_text(COMPLETIONS, b'{"choices":[{"text":"t","finish_reason":"stop"}]}') == ("t", "stop")
    assert answer_text(CHAT_COMPLETIONS, b'{"choices":[{"message":{"content":"c"}}]}') == ("c", None)
    assert answer_text(CHAT_COMPLETIONS, b"not json") == ("", None)


# -- the model check ------------------------------------------------------------------------------------------
def test_a_provider_failure_reads_as_the_model_servers_code() -> None:
    def healthy() -> dict:
        return {"default": DeploymentState()}

    auth = model_server_error(UpstreamAuthError("refused the key"), healthy)
    assert isinstance(auth, DuoModelServerError) and auth.status == 421 and auth.message == "401: refused the key"
    assert model_server_error(UpstreamRateLimited(), healthy).message.startswith("429: ")
    assert model_server_error(UpstreamError("The provider for model 'm' answered HTTP 503: busy"),
                              healthy).message.startswith("503: ")
    # No HTTP answer at all: not the model server's code (the check answers 422, a slash command its own error).
    assert model_server_error(UpstreamError("Calling the provider failed: connection refused"), healthy) is None


def test_a_model_with_deployments_reads_as_the_model_servers_code_too() -> None:
    """A model whose deployments' health is kept answers DeploymentsUnavailable (workers.deployments)."""
    tried = DeploymentsUnavailable("Every deployment of model 'm' tried failed (1 attempt); last error: HTTP 401: no")
    assert model_server_error(tried, dict).message.startswith("401: Every deployment")

    out = DeploymentsUnavailable("No deployment of model 'm' is available: each one is failed or cooling down.")
    failed = {"a": DeploymentState(COOLING, until=1e12), "b": DeploymentState(FAILED, reason="http_403")}
    refused = model_server_error(out, lambda: failed)
    assert isinstance(refused, DuoModelServerError) and refused.message.startswith("403: deployment 'b' is failed")
    assert model_server_error(out, lambda: {"a": DeploymentState(COOLING, until=1e12)}) is None

    def redis_down() -> dict:
        raise RedisError("down")

    assert model_server_error(out, redis_down) is None


def test_a_probe_is_queued_at_the_front() -> None:
    assert "'LPUSH'" in ENQUEUE_FRONT_LUA and "'RPUSH'" not in ENQUEUE_FRONT_LUA
    assert ENQUEUE_FRONT_LUA.replace("LPUSH", "RPUSH").replace("LPOP", "RPOP") == ENQUEUE_LUA
