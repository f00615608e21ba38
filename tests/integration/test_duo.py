"""GitLab Duo Self-Hosted against the real gateway: gunicorn, workers, Redis, the sandbox provider and
the GitLab stand-in, whose OIDC keys sign the instance's JWT (``sandbox.gitlab_oidc``).

The requests are the fixtures of ../shared/duo-protocol.md section 6 (what GitLab 17.x and 18.x send,
read in GitLab's Rails source): every Duo endpoint, whole and streamed, through an OpenAI-compatible
(generic) model of a fill-in-the-middle family, an openai and an anthropic model (and a vertex one for
completion and chat); the admin's Test connection with the model's queue full of slow jobs; a route
limiting one user's code suggestions; the access record of a code suggestion.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import requests

from sandbox.gitlab_oidc import INSTANCE_ID
from shared.keys import deployment_health_key
from tests.duo_requests import GLOBAL_USER_ID, mint
from tests.harness import Stack, in_background, job_id_for, wait_for
from tests.stack_models import sandbox_model, vertex_model
from tools.embedded_redis import free_port

CONFIG = "models:\n" + "".join([
    sandbox_model("codestral"),
    sandbox_model("gpt", "openai", model="gpt-4o-upstream"),
    sandbox_model("claude", "anthropic", model="claude-upstream"),
    vertex_model("gemini"),
    sandbox_model("slow", timeout="30s", concurrency=1, max_queue_depth=10),
    sandbox_model("narrow", concurrency=1, max_queue_depth=1),
    sandbox_model("per-user"),
    sandbox_model("small", "openai", model="gpt-ctx50"),  # the sandbox refuses a prompt over 50 tokens
    sandbox_model("wrong-key", api_key="sk-not-the-right-key", timeout="5s", retries="{attempts: 1}"),
    # a server that takes the connection and never answers
    sandbox_model("hung", base_url="http://127.0.0.1:{hung_port}/v1", api_key=None, retries="{attempts: 1}"),
    sandbox_model("broken", api_key="sk-not-the-right-key", timeout="5s", retries="{attempts: 1}",
                  fallbacks="[codestral]"),
]) + """routes:
  - name: one-a-minute-each
    match: {model_name: [per-user]}
    rate_limit: {requests_per_minute: 1, per: user}
  - name: bob-code-suggestions
    match: {gitlab_user_id: [3], model_name: [codestral]}
    rate_limit: {requests_per_minute: 2, per: user}
  - name: everyone
    match: {model_name: [codestral, gpt, claude, gemini, slow, narrow, small, wrong-key, broken, hung]}
duo:
  prompts:
    gpt:
      family: codestral
"""
RELATED_FILE = '<file_content file_name="main.go">\npackage main\n</file_content>\n'
SECRET_KEY = "sk-duo-model-key-never-logged"  # the model API key GitLab sends; never used, never logged


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with socket.create_server(("127.0.0.1", 0), backlog=16) as hung:  # the kernel accepts; nobody answers
        config = CONFIG.replace("{hung_port}", str(hung.getsockname()[1]))
        with Stack(tmp_path_factory.mktemp("duo"), config, web_workers=1, web_threads=16,
                   env={"METRICS_ENABLED": "true", "METRICS_PORT": str(free_port())}) as gateway:
            yield gateway


def headers(stack: Stack, *, user: str | None = "2", request_id: str | None = None, token: str | None = None,
            mixed_case: bool = False, global_user_id: str = GLOBAL_USER_ID, **claims) -> dict:
    """GitLab's headers (18.x lower-case, 17.x Mixed-Case and without the user)."""
    found = {"Authorization": f"Bearer {token or mint(stack, claims=claims)}",
             "X-Gitlab-Authentication-Type": "oidc", "Content-Type": "application/json",
             "X-Gitlab-Instance-Id" if mixed_case else "x-gitlab-instance-id": INSTANCE_ID,
             "X-Gitlab-Realm" if mixed_case else "x-gitlab-realm": "self-managed",
             "X-Gitlab-Global-User-Id" if mixed_case else "x-gitlab-global-user-id": global_user_id,
             "X-Gitlab-Rails-Send-Start": str(time.time())}
    if user is not None:
        found["x-gitlab-user-id"] = user
    if request_id:
        found["X-Request-ID"] = request_id
    return found


def metadata(model: str, family: str = "mistral") -> dict:
    return {"provider": "openai", "name": family, "endpoint": "http://vllm.internal:8000/v1",
            "api_key": SECRET_KEY, "identifier": f"custom_openai/{model}"}


def completion_body(model: str, *, stream: bool = False, above: str = "def is_even(n: int) ->",
                    family: str = "codestral") -> dict:
    """F4: an 18.x code completion."""
    return {"current_file": {"file_name": "main.py", "content_above_cursor": above, "content_below_cursor": ""},
            "intent": "completion", "stream": stream, "project_path": "acme/handbook", "telemetry": [],
            "prompt_version": 2, "model_provider": "litellm", "prompt": None,
            "model_endpoint": "http://vllm.internal:8000/v1", "model_name": family, "model_api_key": SECRET_KEY,
            "model_identifier": f"custom_openai/{model}"}


def generation_body(model: str, *, stream: bool = False, instruction: str = "Add a method is_public") -> dict:
    """F5/F6: the 18.9 spec's self-hosted code generation body."""
    payload = {"file_name": "test.py", "content_above_cursor": "class Project:\n    ",
               "content_below_cursor": "\n", "language_identifier": "Python", "stream": stream,
               "prompt_id": "code_suggestions/generations", "prompt_version": "^1.0.0",
               "prompt_enhancer": {"examples_array": [], "trimmed_content_above_cursor": "class Project:\n    ",
                                   "trimmed_content_below_cursor": "\n",
                                   "related_files": [RELATED_FILE],
                                   "related_snippets": [], "libraries": [], "user_instruction": instruction}}
    return {"current_file": {"file_name": "test.py", "content_above_cursor": "class Project:\n    ",
                             "content_below_cursor": "\n"},
            "telemetry": [], "stream": stream,
            "prompt_components": [{"type": "code_editor_generation", "payload": payload}],
            "model_metadata": metadata(model)}


def chat_body(model: str, question: str) -> dict:
    """F7: an 18.x Duo Chat step."""
    return {"messages": [{"role": "user", "content": "earlier question", "additional_context": None,
                          "agent_scratchpad": None},
                         {"role": "assistant", "content": "earlier answer", "additional_context": None,
                          "agent_scratchpad": []},
                         {"role": "user", "content": question, "context": {"type": "issue", "title": "Merge trains"},
                          "current_file": None,
                          "additional_context": [{"category": "snippet", "id": "hello", "content": "puts 1",
                                                  "metadata": {}}]}],
            "model_metadata": metadata(model), "unavailable_resources": ["Pipelines", "Vulnerabilities"]}


def tool_body(model: str, *, stream: bool = True, selected: str = "def foo\n  42\nend") -> dict:
    """F8: /explain."""
    return {"stream": stream,
            "inputs": {"input": "Explain the code user selected inside <selected_code></selected_code> tags.",
                       "selected_text": selected, "file_content": "",
                       "language_info": "The code is written in Ruby and stored as foo.rb"},
            "model_metadata": metadata(model), "prompt_version": "^1.0.0"}


def post(stack: Stack, path: str, body: dict, hdrs: dict, **kwargs) -> requests.Response:
    return requests.post(f"{stack.url}{path}", data=json.dumps(body), headers=hdrs, timeout=30, **kwargs)


def sent_to_provider(stack: Stack, request_id: str) -> dict:
    entries = wait_for(lambda: [e for e in stack.sandbox_log() if e["key"] == request_id] or None, timeout=10,
                       message=f"the provider's request for {request_id}")
    return entries[-1]


# -- the unauthenticated ones ---------------------------------------------------------------------------
def test_healthz_answers_without_a_token_and_head_root_answers(stack: Stack) -> None:
    answer = requests.get(f"{stack.url}/monitoring/healthz", headers={"accept": "application/json"}, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert answer.headers["Content-Type"].startswith("application/json")
    assert requests.head(f"{stack.url}/", timeout=5).status_code < 500  # GitLab's host probe


def test_direct_access_is_refused_and_docs_search_finds_nothing(stack: Stack) -> None:
    refused = requests.post(f"{stack.url}/v1/code/user_access_token", headers=headers(stack), timeout=5)
    assert refused.status_code == 403 and refused.json() == {"detail": "Direct connections are disabled"}
    search = post(stack, "/v1/search/gitlab-docs", {"type": "search-docs", "metadata": {"source": "GitLab EE",
                                                                                        "version": "18.9.0"},
                                                    "payload": {"query": "merge trains"}}, headers(stack))
    assert search.status_code == 200, search.text
    assert search.json()["response"] == {"results": []}
    assert post(stack, "/v1/search/gitlab-docs", {}, headers(stack, token="not-a-jwt")).status_code == 401


# -- code completion -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["codestral", "gpt", "claude", "gemini"])
def test_code_completion_whole_18x(stack: Stack, model: str) -> None:
    rid = f"duo-complete-{model}"
    answer = post(stack, "/v2/code/completions", completion_body(model), headers(stack, request_id=rid))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["object"] == "text_completion" and body["choices"][0]["index"] == 0
    assert body["model"]["name"] == model and body["model"]["lang"] == "python"
    if model == "gemini":  # no FIM: the chat completion prompt, translated to Gemini (the Vertex stand-in)
        assert "is_even" in body["choices"][0]["text"]
        return
    # The sandbox echoes the prompt's end; a FIM family's stop words cut it where its markers start.
    assert body["choices"][0]["text"].startswith("Sandbox ")
    sent = sent_to_provider(stack, rid)
    if model == "claude":  # no FIM: the chat completion prompt, translated to Anthropic's Messages
        assert sent["path"] == "/v1/messages"
        assert "Fill-in-the-middle" in json.dumps(sent["body"])
    else:  # a FIM family (GitLab's model_name, or duo.prompts.gpt.family): its template through /v1/completions
        assert sent["path"] == "/v1/completions"
        assert sent["body"]["prompt"] == "<s>[SUFFIX][PREFIX]def is_even(n: int) ->"
        assert "[PREFIX]" in sent["body"]["stop"]
    text = json.dumps(sent["body"])
    assert SECRET_KEY not in text and "vllm.internal" not in text  # GitLab's model fields never reach a job


def test_code_completion_as_the_language_server_sends_and_reads_it(stack: Stack) -> None:
    """GitLab passes what the IDE's Language Server sent through to us (ee/lib/code_suggestions/tasks/
    base.rb); the Language Server builds it in suggestion_client/create_v2_request.ts (project_path
    maybe '', project_id -1, choices_count 4 on a manual request, context items) and reads
    SuggestionResponse (suggestion_client/suggestion_client.ts): choices[].text and model's lang,
    engine and name (gitlab-org/editor-extensions/gitlab-lsp, read through the code search index)."""
    body = {**completion_body("codestral"), "project_path": "", "project_id": -1, "choices_count": 4,
            "context": [{"type": "file", "name": "util.py", "content": "def helper(): pass"}]}
    answer = post(stack, "/v2/code/completions", body, headers(stack))
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert [set(choice) >= {"text"} for choice in found["choices"]] == [True]
    assert isinstance(found["choices"][0]["text"], str) and found["choices"][0]["text"]
    assert {k: found["model"][k] for k in ("lang", "name")} == {"lang": "python", "name": "codestral"}
    assert isinstance(found["model"]["engine"], str)


def test_code_completion_17x_form_maps_by_model_name_and_uses_its_prompt(stack: Stack) -> None:
    body = completion_body("x")
    for key in ("model_identifier", "intent", "project_path"):
        body.pop(key)
    body["prompt"] = "<s>[SUFFIX][PREFIX]def is_odd(n: int) ->"
    rid = "duo-complete-17x"
    hdrs = headers(stack, user=None, mixed_case=True, request_id=rid, aud="gitlab-ai-gateway",
                   scopes=["code_suggestions"])
    answer = post(stack, "/v2/completions", body, hdrs)  # the alias
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"].startswith("Sandbox completion of:")
    assert sent_to_provider(stack, rid)["body"]["prompt"] == body["prompt"]
    record = stack.access_record(rid)
    assert record["duo_feature"] == "code_completions" and record["user_id"] is None
    assert record["gitlab_global_user_id"] == GLOBAL_USER_ID  # GitLab's pseudonym of the user: all 17.x names


@pytest.mark.parametrize("model", ["codestral", "gpt", "claude"])
def test_code_completion_streamed_is_raw_text(stack: Stack, model: str) -> None:
    body = completion_body(model, stream=True, above="def add(a, b): [[sandbox chunk_delay_ms=5]]")
    with post(stack, "/v2/code/completions", body, headers(stack), stream=True) as answer:
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        text = b"".join(answer.iter_content(None)).decode()
    assert text.startswith("Sandbox ") and ("add(a, b)" in text or model != "claude")
    assert "data:" not in text and "keep-alive" not in text  # no framing, no comments


def test_a_silent_model_gets_no_keepalive_into_the_code(stack: Stack) -> None:
    """Past the relay's read interval (api.duo.resources.READ_INTERVAL, 5 s) a stream of another
    format would get a keep-alive comment; raw text gets nothing but the model's text."""
    body = completion_body("claude", stream=True, above="def slow(): [[sandbox silence_ms=5600]]")
    with post(stack, "/v2/code/completions", body, headers(stack), stream=True) as answer:
        assert answer.status_code == 200
        text = b"".join(answer.iter_content(None)).decode()
    assert text.startswith("Sandbox reply:") and "def slow():" in text
    assert "keep-alive" not in text and "\n\n" not in text  # the sandbox's words, single-spaced, nothing else


@pytest.mark.parametrize(("path", "body"), [
    ("/v2/code/completions", lambda: completion_body("codestral", stream=True, above="x = 1 [[sandbox fail_after=1]]")),
    ("/v1/prompts/chat/explain_code", lambda: tool_body("codestral", selected="x = 1 [[sandbox fail_after=1]]")),
])
def test_a_raw_text_stream_that_fails_closes_the_connection_without_error_text(stack: Stack, path, body) -> None:
    with post(stack, path, body(), headers(stack), stream=True) as answer:
        assert answer.status_code == 200
        received = b""
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            for piece in answer.iter_content(None):
                received += piece
    assert b"error" not in received.lower() and b"{" not in received


# -- code generation --------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["codestral", "gpt", "claude", "gemini"])
def test_code_generation_v3_whole_and_raw_stream(stack: Stack, model: str) -> None:
    rid = f"duo-generate-{model}"
    answer = post(stack, "/v3/code/completions", generation_body(model), headers(stack, request_id=rid))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "is_public" in body["choices"][0]["text"]
    assert body["metadata"]["model"]["name"] == model and body["model"]["lang"] == "python"
    assert "Add a method is_public" in body["choices"][0]["text"]  # the instruction reached the model
    if model != "gemini":  # the Vertex stand-in keeps no log of what it was sent
        assert sent_to_provider(stack, rid)["body"]["max_tokens"] == 2048
    with post(stack, "/v3/code/completions", generation_body(model, stream=True), headers(stack),
              stream=True) as streamed:
        assert streamed.status_code == 200
        text = b"".join(streamed.iter_content(None)).decode()
    assert "is_public" in text and "data:" not in text


@pytest.mark.parametrize("model", ["codestral", "gpt", "claude", "gemini"])
def test_code_generation_v4_streams_gitlab_sse_events(stack: Stack, model: str) -> None:
    body = generation_body(model, stream=True, instruction="Add is_public [[sandbox chunk_delay_ms=5]]")
    with post(stack, "/v4/code/suggestions", body, headers(stack), stream=True) as answer:
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Streaming-Format"] == "sse"
        raw = b"".join(answer.iter_content(None)).decode()
    events = [block.split("\n") for block in raw.strip("\n").split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[0] == "stream_start" and names[-1] == "stream_end" and set(names[1:-1]) == {"content_chunk"}
    assert len(names) > 3
    datas = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    assert datas[0]["metadata"]["model"]["name"] == model and datas[-1] is None
    text = "".join(d["choices"][0]["delta"]["content"] for d in datas[1:-1])
    assert "is_public" in text
    whole = post(stack, "/v4/code/suggestions", generation_body(model), headers(stack))
    assert whole.status_code == 200 and "is_public" in whole.json()["choices"][0]["text"]


# -- Duo Chat ----------------------------------------------------------------------------------------------
def read_in_pieces(stack: Stack, path: str, body: dict, hdrs: dict, piece: int = 7) -> tuple[str, bytes]:
    """The raw response, read a few bytes at a time, as GitLab's Net::BufferedIO reads it in pieces."""
    url = urlsplit(stack.url)
    data = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
                     f"{head}\r\n".encode() + data)
        received = b""
        while chunk := sock.recv(piece):
            received += chunk
    head_part, _, payload = received.partition(b"\r\n\r\n")
    return head_part.decode(), _unchunk(payload)


def _unchunk(payload: bytes) -> bytes:
    out = b""
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        payload = rest[size + 2:]
    return out


@pytest.mark.parametrize("model", ["codestral", "gpt", "claude", "gemini"])
def test_chat_events_one_whole_object_per_line_however_reads_split(stack: Stack, model: str) -> None:
    question = "What is a merge train? [[sandbox chunk_delay_ms=5]]"
    head, payload = read_in_pieces(stack, "/v2/chat/agent", chat_body(model, question), headers(stack))
    assert " 200 " in head.split("\r\n")[0], head
    assert "content-type: application/x-ndjson" in head.lower()
    lines = payload.decode().split("\n")
    assert lines[-1] == ""  # every event ends with its newline
    events = [json.loads(line) for line in lines[:-1]]  # each line is one whole JSON object
    assert len(events) > 3
    assert all(e["type"] == "final_answer_delta" for e in events)
    assert events[-1]["data"]["finish_reason"] == "stop"
    answer = "".join(e["data"]["text"] for e in events)
    assert "What is a merge train?" in answer
    assert "Merge trains" in answer and "puts 1" in answer  # the page and the additional context went along


def test_chat_failure_after_start_is_an_error_event(stack: Stack) -> None:
    body = chat_body("codestral", "Explain [[sandbox error_after=2]]")
    with post(stack, "/v2/chat/agent", body, headers(stack), stream=True) as answer:
        assert answer.status_code == 200
        lines = b"".join(answer.iter_content(None)).decode().strip("\n").split("\n")
    last = json.loads(lines[-1])
    assert last["type"] == "error" and last["data"]["retryable"] is False and last["data"]["message"]


@pytest.mark.parametrize(("model", "message", "code"), [
    ("small", "prompt is too long: This model's maximum context length is 50 tokens", "context_length_exceeded"),
    ("wrong-key", "", "upstream_auth_error"),
])
def test_chat_failure_before_any_text_is_an_error_event_too(stack: Stack, model: str, message: str,
                                                            code: str) -> None:
    """As GitLab's gateway answers (its ReAct agent's error event in the 200 stream), so GitLab says
    "prompt is too long" (A1005) or retries a retryable step, instead of a bare A9999."""
    rid = f"duo-chat-fails-{model}"
    answer = post(stack, "/v2/chat/agent", chat_body(model, "What is a merge train?"), headers(stack, request_id=rid))
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("application/x-ndjson")
    assert answer.text.endswith("\n") and answer.text.count("\n") == 1  # one whole event
    event = json.loads(answer.text)
    assert event["type"] == "error" and event["data"]["retryable"] is False
    assert event["data"]["message"].startswith(message) and event["data"]["message"]
    assert stack.access_record(rid)["error_code"] == code


@pytest.mark.parametrize("model", ["codestral", "gpt", "claude", "gemini"])
def test_slash_command_streamed_raw_and_whole_json_string(stack: Stack, model: str) -> None:
    with post(stack, "/v1/prompts/chat/explain_code", tool_body(model), headers(stack), stream=True) as answer:
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        text = b"".join(answer.iter_content(None)).decode()
    assert "def foo 42 end" in text and "data:" not in text
    whole = post(stack, "/v1/prompts/chat/explain_code", tool_body(model, stream=False), headers(stack))
    assert whole.status_code == 200 and "def foo" in whole.json()


def test_a_slash_command_whose_model_fails_answers_421_as_gitlabs_gateway_does(stack: Stack) -> None:
    """GitLab's AI gateway answers a prompt whose model failed 421 "<status>: <reason>"
    (ai_gateway/api/v1/prompts/invoke.py: any error with a status_code); streamed, the answer stays
    the gateway's own error, as nothing of the model's reached the client."""
    rid = "duo-tool-model-fails"
    whole = post(stack, "/v1/prompts/chat/explain_code", tool_body("wrong-key", stream=False),
                 headers(stack, request_id=rid))
    assert whole.status_code == 421, whole.text
    assert whole.json()["detail"].startswith("401: ")
    assert stack.access_record(rid)["error_code"] == "duo_model_server_error"
    streamed = post(stack, "/v1/prompts/chat/explain_code", tool_body("wrong-key"), headers(stack))
    assert streamed.status_code == 502 and streamed.json()["detail"]


def test_a_tool_the_token_lacks_is_refused(stack: Stack) -> None:
    answer = post(stack, "/v1/prompts/chat/troubleshoot_job", tool_body("codestral"), headers(stack))
    assert answer.status_code == 403 and answer.json() == {"detail": "Unauthorized to access troubleshoot_job"}


def test_only_gitlabs_chat_tools_are_tools(stack: Stack) -> None:
    """A token's other unit primitives are no tools: one scoped for code completion alone cannot chat through
    /v1/prompts/chat/complete_code, nor a chat token through .../duo_chat (404 in GitLab's gateway's format,
    no job, no model call), whatever the token's scopes, as GitLab's gateway answers a prompt it does not
    know; the tool GitLab sends with that token is served."""
    before = len(stack.sandbox_log())
    for tool, scopes in (("complete_code", ["complete_code"]), ("generate_code", ["generate_code"]),
                         ("duo_chat", ["duo_chat"]), ("code_suggestions", ["code_suggestions"])):
        answer = post(stack, f"/v1/prompts/chat/{tool}", tool_body("codestral", stream=False),
                      headers(stack, scopes=scopes))
        assert answer.status_code == 404, (tool, answer.text)
        assert answer.json() == {"detail": f"Prompt 'chat/{tool}' not found"}
    assert len(stack.sandbox_log()) == before
    answer = post(stack, "/v1/prompts/chat/write_tests", tool_body("codestral", stream=False),
                  headers(stack, scopes=["write_tests"]))
    assert answer.status_code == 200 and "def foo" in answer.json()


# -- mapping and refusals -----------------------------------------------------------------------------------
def test_an_unmapped_model_is_a_422_gitlab_shows(stack: Stack) -> None:
    answer = post(stack, "/v3/code/completions", generation_body("nonexistent"), headers(stack))
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert isinstance(detail, list) and "custom_openai/<model>" in detail[0]["msg"]


def test_missing_scope_and_bad_token_answer_as_gitlabs_gateway(stack: Stack) -> None:
    answer = post(stack, "/v2/code/completions", completion_body("codestral"), headers(stack, scopes=["duo_chat"]))
    assert answer.status_code == 403 and answer.json() == {"detail": "Unauthorized to access code completions"}
    missing = requests.post(f"{stack.url}/v2/code/completions", json=completion_body("codestral"), timeout=5)
    assert missing.status_code == 401 and missing.json() == {"error": "No authorization header presented"}


def test_a_model_that_fails_falls_back_as_any_request_does(stack: Stack) -> None:
    rid = "duo-fallback"
    answer = post(stack, "/v2/code/completions", completion_body("broken"), headers(stack, request_id=rid))
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"].startswith("Sandbox ")
    assert stack.access_record(rid)["served_by"].startswith("codestral")


def test_the_model_api_key_gitlab_sends_is_never_logged_nor_stored(stack: Stack) -> None:
    rid = "duo-secret-key"
    body = completion_body("codestral", above="def slow(): [[sandbox delay_ms=2000]]")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(post, stack, "/v2/code/completions", body, headers(stack, request_id=rid))
        stored = b"".join(stack.redis().hgetall(f"rq:job:{job_id_for(stack, rid)}").values())  # while it runs
        assert answer.result().status_code == 200
    assert b"def slow()" in stored  # the job's request is there: the key would be found if it were
    assert SECRET_KEY.encode() not in stored and b"vllm.internal" not in stored
    assert SECRET_KEY not in stack.logs()


# -- the admin's Test connection ---------------------------------------------------------------------------
CHECK = "/v1/prompts/model_configuration%2Fcheck"


def test_model_check_of_a_model_that_takes_it_and_never_answers_is_a_422_in_time(stack: Stack) -> None:
    rid = "duo-check-hung"
    answer, elapsed = timed_check(stack, "hung", rid)
    assert answer.status_code == 422, answer.text
    assert "did not answer within 2.5 s" in answer.json()["detail"][0]["msg"]
    assert elapsed < 2.9
    assert stack.access_record(rid)["duo_probe"] == "unanswered"


def check_body(model: str) -> dict:
    return {"inputs": {}, "stream": False, "model_metadata": metadata(model)}


def test_model_check_probes_the_model(stack: Stack) -> None:
    rid = "duo-check-ok"
    answer = post(stack, CHECK, check_body("codestral"), headers(stack, request_id=rid))
    assert answer.status_code == 200, answer.text
    assert isinstance(answer.json(), str) and answer.json()
    assert sent_to_provider(stack, rid)["body"]["max_tokens"] == 16
    assert stack.access_record(rid)["duo_probe"] == "answered"


def test_model_check_reports_the_model_servers_error_as_421(stack: Stack) -> None:
    answer = post(stack, CHECK, check_body("wrong-key"), headers(stack))
    assert answer.status_code == 421, answer.text
    assert answer.json()["detail"].startswith("401: ")


def test_model_check_of_a_deployment_a_401_took_out_still_shows_the_model_servers_code(stack: Stack) -> None:
    """"broken" has fallbacks, so its deployment's health is kept: the first 401 marks it failed, and
    a later check reaches no provider, yet GitLab still shows "returned code 401"."""
    first = post(stack, CHECK, check_body("broken"), headers(stack))
    assert first.status_code == 421, first.text
    assert first.json()["detail"].startswith("401: ")
    wait_for(lambda: any(k.endswith(b"|failed") for k in stack.redis().hkeys(deployment_health_key("broken"))),
             timeout=10, message="the deployment to be marked failed")
    rid = "duo-check-failed-deployment"
    again = post(stack, CHECK, check_body("broken"), headers(stack, request_id=rid))
    assert again.status_code == 421, again.text
    assert again.json()["detail"].startswith("401: deployment 'default' is failed")
    assert not [e for e in stack.sandbox_log() if e["key"] == rid]  # the provider was not asked


def test_model_check_of_an_unknown_model_is_a_422_list(stack: Stack) -> None:
    answer = post(stack, CHECK, check_body("nonexistent"), headers(stack))
    assert answer.status_code == 422 and isinstance(answer.json()["detail"], list)
    assert answer.json()["detail"][0]["msg"]


@contextmanager
def busy(stack: Stack, model: str, count: int, delay_ms: int):
    """``model``'s one slot taken by a slow chat job and ``count - 1`` more waiting in its queue, until
    the block ends and they are all answered."""
    results: dict = {}
    threads = []
    for i in range(count):
        threads.append(in_background(stack, results, f"{model}-busy-{uuid.uuid4().hex[:8]}", model,
                                     f"busy [[sandbox delay_ms={delay_ms}]]"))
        if i == 0:  # the first holds the model's one slot before the others queue behind it
            wait_for(lambda: stack.redis().llen(f"rq:queue:{model}") == 0
                     and any("busy" in json.dumps(e["body"]) and e["body"].get("model") == model
                             for e in stack.sandbox_log()), timeout=10, message="the first slow job to run")
    wait_for(lambda: stack.redis().llen(f"rq:queue:{model}") == count - 1, timeout=10, message="the queue to fill")
    yield
    for thread in threads:
        thread.join(30)
    assert all(getattr(r, "status_code", None) == 200 for r in results.values()), results


def timed_check(stack: Stack, model: str, request_id: str) -> tuple[requests.Response, float]:
    """Test connection of ``model``, and the seconds from sending it to its answer."""
    hdrs = headers(stack, request_id=request_id)
    started = time.monotonic()
    answer = post(stack, CHECK, check_body(model), hdrs)
    return answer, time.monotonic() - started


def test_model_check_jumps_the_queue_and_answers_within_the_time(stack: Stack) -> None:
    rid = "duo-check-queued"
    with busy(stack, "slow", 4, 1200):
        answer, elapsed = timed_check(stack, "slow", rid)
    assert answer.status_code == 200, answer.text
    assert elapsed < 2.5
    assert stack.access_record(rid)["duo_probe"] == "answered"  # ahead of three jobs of 1.2 s each


def test_model_check_not_probed_in_time_still_answers_200(stack: Stack) -> None:
    rid = "duo-check-busy"
    # The probe goes ahead of the queued job: only the running one (4.5 s) keeps it from a worker.
    with busy(stack, "slow", 2, 4500):
        answer, elapsed = timed_check(stack, "slow", rid)
    assert answer.status_code == 200, answer.text
    assert 2.0 < elapsed < 2.9
    assert stack.access_record(rid)["duo_probe"] == "not_probed"
    assert "model check not probed" in stack.logs()


def test_model_check_of_a_model_whose_queue_is_at_its_limit_answers_200_at_once(stack: Stack) -> None:
    """"narrow" queues one job at most: with it waiting, the probe cannot be queued, so no worker could
    take it in time; the model maps and has live workers, so the answer is 200, without waiting."""
    rid = "duo-check-queue-full"
    with busy(stack, "narrow", 2, 2000):
        answer, elapsed = timed_check(stack, "narrow", rid)
    assert answer.status_code == 200, answer.text
    assert elapsed < 1.0
    assert stack.access_record(rid)["duo_probe"] == "not_probed"


# -- routes, limits, the access record ---------------------------------------------------------------------
def test_a_route_limits_one_users_code_suggestions(stack: Stack) -> None:
    bob = [post(stack, "/v2/code/completions", completion_body("codestral"), headers(stack, user="3"))
           for _ in range(3)]
    assert [a.status_code for a in bob] == [200, 200, 429]
    assert "detail" in bob[2].json() and bob[2].headers.get("Retry-After")
    alice = post(stack, "/v2/code/completions", completion_body("codestral"), headers(stack, user="2"))
    assert alice.status_code == 200


def test_requests_without_a_user_are_limited_per_gitlab_pseudonymous_user(stack: Stack) -> None:
    """17.x sends no user id: a per-user limit counts each of GitLab's pseudonymous users apart
    (X-Gitlab-Global-User-Id), not every user-less request in one allowance."""
    def complete(global_user_id: str) -> requests.Response:
        hdrs = headers(stack, user=None, mixed_case=True, global_user_id=global_user_id, aud="gitlab-ai-gateway",
                       scopes=["code_suggestions"])
        return post(stack, "/v2/completions", completion_body("per-user"), hdrs)

    first = complete("Zmlyc3QtdXNlcg==")
    assert first.status_code == 200, first.text
    again = complete("Zmlyc3QtdXNlcg==")
    assert again.status_code == 429, again.text
    assert "your user under route 'one-a-minute-each'" in again.json()["detail"] and "None" not in again.text
    assert complete("c2Vjb25kLXVzZXI=").status_code == 200  # another user of the same instance


def test_the_access_record_names_the_user_and_the_feature(stack: Stack) -> None:
    rid = "duo-record"
    answer = post(stack, "/v2/code/completions", completion_body("codestral"), headers(stack, request_id=rid))
    assert answer.status_code == 200
    record = stack.access_record(rid)
    assert record["duo_feature"] == "code_completions"
    assert record["user_id"] == "2" and record["username"] == "alice"
    assert record["project_id"] == "102"  # acme/handbook, where alice is a developer
    assert record["destination"] == "codestral" and record["status"] == 200
    assert record["gitlab_instance_id"] == INSTANCE_ID
    counted = re.compile(r'aigw_requests_total\{endpoint="duo\.code_completions",model="codestral",route="everyone",'
                         r'status="200"\} [1-9]')
    wait_for(lambda: counted.search(requests.get(f"http://127.0.0.1:{stack.env['METRICS_PORT']}/metrics",
                                                 timeout=10).text), timeout=10,
             message="the request metrics to name the Duo feature")
