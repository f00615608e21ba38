"""The GitLab Duo endpoints: GitLab's AI gateway's paths, bodies and answers, served by the gateway's
own routes, limits, queues and workers.

Each request is checked as GitLab's gateway checks it (``api.duo_auth``: the instance's JWT, the
feature's unit primitive, the user and project behind it), mapped to a configured model
(``api.duo.models``), turned into an ordinary chat or completion job (``api.duo.jobs``), admitted like
any request (routes by ``gitlab_user_id`` and project, rate limits, the queue's limit:
``api.admission``) and answered in the endpoint's own format (``api.duo.shapes``). Errors come as
GitLab's gateway gives them (``shared.errors.duo_error_body``). The access record and the request
metrics name the Duo feature (``duo_feature``; the endpoint label ``duo.<feature>``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import falcon

from api import fallback
from api.admission import Admission, Admitted
from api.answers import Answers
from api.disconnect import client_gone_probe
from api.duo import jobs
from api.duo.model_errors import model_server_error
from api.duo.models import DuoInvalid, mapped_model
from api.duo.shapes import (
    ChatEvents,
    CodeSuggestionEvents,
    RawText,
    answer_text,
    completion_response,
    generation_response,
    whole_chat_answer,
)
from api.duo_auth import DuoAuthenticator
from api.errors import DuoForbidden
from api.streaming import StreamShape, respond_with_stream
from shared.breaker import read_states
from shared.config import GatewayConfig, ModelConfig
from shared.errors import GatewayError, InvalidRequest, NotFound
from shared.replies import CHUNK, SERVED_BY, Reply

WIRE = "duo"
# The unit primitives each feature needs (GitLab's gateway: api/v2/code/completions.py, the prompt
# definitions' unit_primitive, api/v2/chat/agent.py); api.duo_auth accepts 17.x's code_suggestions
# for either code feature.
COMPLETE_CODE = ("complete_code",)
GENERATE_CODE = ("generate_code",)
DUO_CHAT = ("duo_chat", "duo_classic_chat")
# The chat tools GitLab sends to /v1/prompts/chat/{unit_primitive}: those whose executor's
# use_ai_gateway_agent_prompt? is true, by their unit_primitive (GitLab EE 18.9,
# ee/lib/gitlab/llm/chain/tools/<tool>/executor.rb; documentation_search from tools/embeddings_completion.rb;
# the path from ee/lib/gitlab/llm/chain/requests/ai_gateway.rb#endpoint). A name outside it is no tool,
# so no scope of the token (complete_code, duo_chat...) may be used as one: 404, as GitLab's gateway answers
# a prompt it does not know.
CHAT_TOOLS = frozenset({
    "explain_code", "write_tests", "refactor_code", "fix_code", "troubleshoot_job", "explain_vulnerability",
    "summarize_comments", "issue_reader", "epic_reader", "merge_request_reader", "commit_reader", "build_reader",
    "work_item_reader", "documentation_search",
})


@dataclass(frozen=True)
class Duo:
    """What every Duo endpoint uses."""

    config: GatewayConfig
    auth: DuoAuthenticator
    admission: Admission
    answers: Answers


def read_body(req) -> tuple[dict | None, GatewayError | None]:
    """The JSON body, or the error it is; raised only once the caller is known, as GitLab's gateway
    authenticates before it reads the body."""
    try:
        body = req.get_media()
    except GatewayError as error:
        return None, error
    except falcon.HTTPError as error:  # Falcon's own: the app's handler turns it into ours
        return None, InvalidRequest(str(error.title or "The body could not be read."))
    if not isinstance(body, dict):
        return None, DuoInvalid("The request body must be a JSON object.")
    return body, None


class DuoEndpoint:
    authenticate = False  # no user's GitLab token: the middleware leaves the caller to...
    instance_token = True  # ...the instance's JWT, checked here (api.duo_auth)
    wire = WIRE
    feature = ""  # GitLab's feature setting name: duo.<feature> in the config, the access record's duo_feature
    unit_primitives: tuple[str, ...] = ()

    def __init__(self, duo: Duo):
        self.duo = duo
        self.endpoint = f"duo.{self.feature}"  # the request metrics' endpoint label

    def caller(self, req, *, project_path=None, unit_primitives: tuple[str, ...] | None = None) -> dict:
        """The request's body, once its caller is known (``req.context.identity``)."""
        body, error = read_body(req)
        req.context.log["duo_feature"] = self.feature
        if body is not None and project_path is None:
            project_path = body.get("project_path")
        self.duo.auth.identify(req, unit_primitives=unit_primitives or self.unit_primitives,
                               project_path=project_path if isinstance(project_path, str) else None)
        if error is not None:
            raise error
        return body

    def model(self, body: dict, *, flat: bool = False) -> ModelConfig:
        if flat:  # code completion sends the model's fields at the top level
            name, identifier = body.get("model_name"), body.get("model_identifier")
        else:
            metadata = body.get("model_metadata") if isinstance(body.get("model_metadata"), dict) else {}
            name, identifier = metadata.get("name"), metadata.get("identifier")
        return mapped_model(self.duo.config, self.feature, name=name, identifier=identifier)

    def overrides(self, model: ModelConfig):
        return self.duo.config.duo.prompts_for(model.name)

    # Whether the model's failure before any text is an event of a 200 stream (``shape.failure``) rather
    # than an HTTP error: Duo Chat's, as GitLab's gateway answers once it has admitted the request.
    failure_as_event = False

    def run(self, req, resp, job: jobs.Job, *, whole: Callable[[str], object], shape: StreamShape) -> None:
        """Admit the job, wait for its answer and send it: whole as ``whole(text)`` makes it, or as
        a stream in ``shape``."""
        admitted = self.duo.admission.admit(req, endpoint=job.endpoint, body=job.body, may_fall_back=True)
        try:
            admitted, reply = self._wait(req, admitted)
        except GatewayError as error:
            ending = shape.failure(error) if self.failure_as_event else None
            if ending is None:
                raise
            req.context.error_code = error.code  # the access record still says what failed
            resp.status = falcon.HTTP_200
            resp.content_type = shape.content_type
            resp.data = ending
            return
        if reply.kind == CHUNK:
            respond_with_stream(req, resp, self.duo.answers, admitted.job.job_id, reply, admitted.model,
                                keepalive_interval=READ_INTERVAL, shape=shape)
            return
        text, _ = answer_text(job.endpoint, reply.body)
        resp.status = falcon.HTTP_200
        answer = whole(text)
        if isinstance(answer, bytes):  # already in the endpoint's own format
            resp.content_type = shape.content_type
            resp.data = answer
        else:
            resp.media = answer

    def _wait(self, req, admitted: Admitted) -> tuple[Admitted, Reply]:
        """The answer, from the model's fallbacks if it failed before any chunk (``api.fallback``)."""
        req.context.rate_headers = admitted.rate_headers
        gone = client_gone_probe(req.env)
        reply = self.duo.answers.wait(admitted.model, admitted.job, client_gone=gone)
        if reply.error is not None and admitted.trail is not None:
            admitted, reply = fallback.follow(req, self.duo.admission, self.duo.answers, admitted, reply,
                                              client_gone=gone)
            req.context.rate_headers = admitted.rate_headers
        req.context.log.update({k: reply.meta[k] for k in ("queue_wait_ms", "attempts", "upstream_seconds",
                                                           SERVED_BY) if k in reply.meta})
        if reply.meta.get("usage"):
            req.context.log["usage"] = reply.meta["usage"]
        if reply.error is not None:
            raise reply.error
        return admitted, reply


# Seconds the relay waits for a chunk before it looks at the client again; no Duo format has a
# keep-alive to send meanwhile (api.duo.shapes).
READ_INTERVAL = 5.0


class CodeCompletions(DuoEndpoint):
    """POST /v2/code/completions and /v2/completions: 17.x (``prompt`` a string) and 18.x (``prompt``
    null, ``prompt_version`` 2) alike; the model's fields are flat."""

    feature = "code_completions"
    unit_primitives = COMPLETE_CODE

    def on_post(self, req, resp) -> None:
        body = self.caller(req)
        model = self.model(body, flat=True)
        job = jobs.completion(body, model, self.overrides(model))
        file_name = body["current_file"].get("file_name")
        self.run(req, resp, job, whole=lambda text: completion_response(text, model.name, file_name),
                 shape=RawText(job.endpoint))


class CodeGenerations(DuoEndpoint):
    """POST /v3/code/completions (raw text when streamed) and /v4/code/suggestions (SSE events)."""

    feature = "code_generations"
    unit_primitives = GENERATE_CODE

    def __init__(self, duo: Duo, *, events: bool):
        super().__init__(duo)
        self.events = events

    def on_post(self, req, resp) -> None:
        body = self.caller(req)
        model = self.model(body)
        job = jobs.generation(body, model, self.overrides(model))
        file_name = _file_name(body)
        shape = (CodeSuggestionEvents(job.endpoint, model.name, file_name) if self.events
                 else RawText(job.endpoint))
        self.run(req, resp, job, whole=lambda text: generation_response(text, model.name, file_name), shape=shape)


class ChatAgent(DuoEndpoint):
    """POST /v2/chat/agent: always NDJSON events; every answer is final (``final_answer_delta``):
    GitLab's ReAct tools (issue and merge request readers...) need its own agent prompts, so they
    are never asked for.

    The model's failure, before its first text as after it, is an ``error`` event of a 200 stream:
    GitLab's gateway answers with its stream before it calls the model, and its ReAct agent turns any
    failure into that event (ai_gateway/api/v2/chat/agent.py, chat/agents/react.py ``astream``).
    GitLab reads it (ee/lib/gitlab/duo/chat/step_executor.rb): "prompt is too long" is shown as such
    (A1005), ``retryable`` retries the step; an HTTP error would be a bare "Error code A9999".
    Refusals before the model (the token, the body, no route, a rate limit, a full queue) stay HTTP
    errors, as GitLab's gateway's own are."""

    feature = "duo_chat"
    unit_primitives = DUO_CHAT
    failure_as_event = True

    def on_post(self, req, resp) -> None:
        body = self.caller(req)
        model = self.model(body)
        job = jobs.chat(body, model, self.overrides(model))
        self.run(req, resp, job, whole=whole_chat_answer, shape=ChatEvents(job.endpoint))


class ChatTool(DuoEndpoint):
    """POST /v1/prompts/chat/{tool}: a slash command (/explain, /tests, /refactor, /fix...): raw text
    when streamed, a JSON string when not. Its unit primitive is the tool's own; only GitLab's chat
    tools (``CHAT_TOOLS``) are tools. Answered whole, a model's failure is GitLab's AI gateway's 421
    "<status>: <reason>" (``api.duo.model_errors``)."""

    feature = "duo_chat"

    def on_post(self, req, resp, tool: str) -> None:
        if tool not in CHAT_TOOLS:
            self._no_such_tool(req, tool)
        body = self.caller(req, unit_primitives=(tool,))
        req.context.log["duo_tool"] = tool
        model = self.model(body)
        job = jobs.tool(body, model, self.overrides(model), tool)
        try:
            self.run(req, resp, job, whole=lambda text: text, shape=RawText(job.endpoint))
        except GatewayError as error:
            shown = None if jobs.stream_flag(body) else model_server_error(
                error, lambda: read_states(self.duo.answers.redis, model))
            if shown is None:
                raise
            raise shown from None

    def _no_such_tool(self, req, tool: str) -> None:
        """404 for any instance token (a bad one: 401), as GitLab's gateway looks the prompt up before the
        token's unit primitives (ai_gateway/api/v1/prompts/invoke.py: KeyError -> 404 "Prompt '<id>' not
        found", where <id> is the path after /v1/prompts/)."""
        req.context.log["duo_feature"] = self.feature
        try:
            self.duo.auth.identify(req, unit_primitives=DUO_CHAT)
        except DuoForbidden:
            pass  # a token with other scopes: still the unknown prompt's 404
        raise NotFound(f"Prompt 'chat/{tool[:64]}' not found")


class DocsSearch(DuoEndpoint):
    """POST /v1/search/gitlab-docs: no documentation index here, so no results (GitLab's chat then
    answers from the model alone). The answer's shape is SearchResponse (api/v1/search/typing.py);
    GitLab reads ``response.results`` (ee/lib/gitlab/llm/ai_gateway/docs_client.rb,
    ee/lib/gitlab/llm/chain/tools/gitlab_documentation/executor.rb)."""

    feature = "duo_chat"
    unit_primitives = ("documentation_search",)

    def on_post(self, req, resp) -> None:
        self.caller(req)
        resp.media = {"response": {"results": []}, "metadata": {"provider": "none", "timestamp": int(time.time())}}


class UserAccessToken:
    """POST /v1/code/user_access_token: the IDE's direct connection is refused, with the words GitLab
    uses when it disables it itself (ee/lib/api/code_suggestions.rb), so the IDE keeps sending code
    suggestions through GitLab, where the instance's token and the user's headers come with them:
    GitLab answers the IDE's direct_access with this status (code_suggestions_client.rb
    #direct_access_token), and the Language Server then sends its suggestions through GitLab
    (gitlab-lsp suggestion/direct_connection_client.ts: any failure falls back, behind a breaker)."""

    authenticate = False
    wire = WIRE
    endpoint = "duo.user_access_token"

    def on_post(self, req, resp) -> None:
        req.context.log["duo_feature"] = "code_suggestions_direct_access"
        resp.status = falcon.HTTP_403
        resp.media = {"detail": "Direct connections are disabled"}


class Healthz:
    """GET /monitoring/healthz: GitLab's gitlab:duo:verify_self_hosted_setup task prints ``status``
    (ee/lib/gitlab/duo/administration/verify_self_hosted_setup.rb); no authentication, as GitLab's
    gateway skips it for this path."""

    authenticate = False
    access_log = False

    def on_get(self, req, resp) -> None:
        resp.media = {"status": "ok"}


def _file_name(body: dict) -> str | None:
    for component in body.get("prompt_components") or []:
        if isinstance(component, dict) and isinstance(component.get("payload"), dict):
            name = component["payload"].get("file_name")
            if isinstance(name, str):
                return name
    current = body.get("current_file")
    return current.get("file_name") if isinstance(current, dict) else None
