"""The running gateway, fuzzed from its published ``openapi.yaml`` with schemathesis.

A real stack (Redis, gunicorn, workers, the sandbox provider, the Vertex and GitLab
stand-ins), called as the demo user. Schemathesis sends, for every operation, the
document's examples, its coverage cases (each constraint's edges, missing fields,
wrong types, other methods) and random cases, valid and invalid, and checks each
response against the document (status documented, body and headers conforming,
invalid input refused, missing credentials refused). On top, every response is
checked here: no 5xx but the documented 502/503/504 with their codes, no traceback
or internal detail in any body, and every error in its endpoint's format.

Request bodies name a configured model most of the time, so the cases go through
routing, admission, the worker and each provider type's translation, not only to a
404. The run is seeded (one seed per operation, derived from ``SEED``), so a failure
reproduces; ``AIGW_FUZZ_EXAMPLES`` raises the random cases per operation and
``AIGW_FUZZ_SEED`` changes the seed, for a longer hunt by hand.
"""

from __future__ import annotations

import builtins
import os
import re
import zlib
from pathlib import Path

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario

from sandbox.gitlab_oidc import INSTANCE_ID
from tests.duo_requests import mint
from tests.harness import DEMO_TOKEN, Stack
from tools.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("AIGW_FUZZ_SEED", "20261207"))
MAX_EXAMPLES = int(os.environ.get("AIGW_FUZZ_EXAMPLES", "200"))
REQUEST_TIMEOUT = 30  # seconds; every model below answers (or times out) well within it

FUZZ_CONFIG = """
models:
  - name: gpt-4o
    type: openai
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
    concurrency: 8
  - name: claude-sonnet
    type: anthropic
    base_url: "{sandbox}"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    model: claude-upstream
    timeout: 10s
    workers: 1
    concurrency: 8
  - name: local
    type: generic
    base_url: "{sandbox}/v1"
    api_key: "${SANDBOX_PROVIDER_KEY}"
    timeout: 10s
    workers: 1
    concurrency: 8
  - name: gemini
    type: vertex
    project: standin-project
    location: us-central1
    base_url: "{vertex}/v1"
    credentials_file: "{vertex_credentials}"
    model: gemini-2.0-flash
    timeout: 10s
    workers: 1
    concurrency: 8
  - name: down                  # nothing listens there: every call is a documented 502
    type: generic
    base_url: "http://127.0.0.1:{closed_port}/v1"
    timeout: 5s
    retries: {attempts: 1}
    workers: 1
jobs:
  result_ttl: 30s
  failure_ttl: 2m
"""
MODELS = ("gpt-4o", "claude-sonnet", "local", "gemini", "down")

# The 5xx a client may get, and their codes (README, "API"); Anthropic's format carries the type only.
# The codes are checked here; schemathesis's own check lets exactly these statuses through.
DOCUMENTED_5XX = {
    501: {"unsupported_transfer_coding"},  # a Transfer-Encoding other than chunked (RFC 9112, 6.1)
    502: {"upstream_error", "upstream_auth_error", "upstream_model_not_found", "worker_lost"},
    503: {"no_workers", "queue_full", "service_unavailable", "gitlab_unavailable"},
    504: {"deadline_exceeded"},
}
ANTHROPIC_5XX = {501: "invalid_request_error", 502: "api_error", 503: "overloaded_error", 504: "api_error"}

# What only a leaked exception would put in a body: a traceback, a source file, a Python exception's name.
INTERNAL_DETAIL = re.compile(r'Traceback|File "|\bline \d+, in\b|[\w/-]+\.py\b|site-packages')
_EXCEPTIONS = sorted(
    {name for name, value in vars(builtins).items()
     if isinstance(value, type) and issubclass(value, BaseException) and name.endswith(("Error", "Exception"))}
    | {"JSONDecodeError", "RedisError", "RequestException", "HTTPError", "MediaMalformedError", "GatewayError",
       "ValidationError"})
EXCEPTION_NAMES = re.compile(r"\b(?:" + "|".join(_EXCEPTIONS) + r")\b")

CONFIG = schemathesis.Config.from_dict({
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    "auth": {"openapi": {"gitlabBearer": {"bearer": DEMO_TOKEN}}},
    "request-timeout": REQUEST_TIMEOUT,
    # Missing and wrong credentials are tried on every operation by the coverage phase; in the random
    # phase they would triple the requests without reaching anything new.
    "phases": {"stateful": {"enabled": False}, "fuzzing": {"checks": {"ignored_auth": {"enabled": False}}}},
    # The documented 5xx pass schemathesis's server-error check (the test checks their codes); a
    # schema-valid request may still be refused by the provider (or the translation to it): the
    # document constrains only what the gateway checks, and passes the provider's 400/413/422 on.
    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", 501, 502, 503, 504]},
               "positive_data_acceptance": {"expected-statuses": ["2xx", 400, 401, 403, 404, 409, 413, 422, 429,
                                                                   "5xx"]}},
})
schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml", config=CONFIG)


def pick(value, choices: tuple):
    """One of ``choices``, or (as often as any one of them) None: chosen by a checksum of the generated
    ``value``, so a case and its choice reproduce together, and evenly (Hypothesis's own draws favour
    the first of a list)."""
    index = zlib.crc32(repr(value).encode("utf-8", "surrogatepass")) % (len(choices) + 1)
    return choices[index] if index < len(choices) else None


@schema.hook
def map_body(context, body):
    """Most bodies name a configured model, so they reach a worker and a provider, through each
    provider type's translation. A model name that breaks the document (an invalid case's point)
    is kept. GitLab Duo's bodies name it as GitLab does: ``model_identifier`` (code completion) or
    ``model_metadata.identifier`` ``custom_openai/<model>``."""
    if not isinstance(body, dict):
        return body
    if context.operation.tags and "duo" in context.operation.tags:
        model = pick(body, MODELS)
        if model is None:
            return body
        if "current_file" in body and "prompt_components" not in body and "model_metadata" not in body:
            return {**body, "model_identifier": f"custom_openai/{model}"}
        metadata = body.get("model_metadata") if isinstance(body.get("model_metadata"), dict) else {}
        return {**body, "model_metadata": {**metadata, "identifier": f"custom_openai/{model}"}}
    if not isinstance(body.get("model"), str) or not body["model"]:
        return body
    return {**body, "model": pick(body, MODELS) or body["model"]}


# The stand-in GitLab's projects as the demo user sees them: a Developer by the group (100, ids and paths
# alike), an Owner (300), one public (102) and one private to others (200: 403 project_not_found).
PROJECTS = ("100", "acme/platform/api", "102", "300", "alice/scratch", "200")
PROJECT_REF = re.compile(schema.raw_schema["components"]["parameters"]["ProjectId"]["schema"]["pattern"])


@schema.hook
def map_headers(context, headers):
    """Most cases name no project or one the demo user can see, instead of a random path GitLab does
    not know: they go on to routing and the model. A malformed reference (an invalid case) is kept."""
    if not headers or not PROJECT_REF.fullmatch(headers.get("X-Gitlab-Project-Id", "")):
        return headers
    project = pick(headers, PROJECTS)
    headers = {name: value for name, value in headers.items() if name != "X-Gitlab-Project-Id"}
    return {**headers, "X-Gitlab-Project-Id": project} if project is not None else headers


# Responses the demo user owns, one the gateway keeps and one the provider keeps, made once the stack
# is up (``fuzz_stack``), so GET and DELETE /v1/responses/{response_id} reach Redis and the provider.
RESPONSE_IDS: list[str] = []


@schema.hook
def map_path_parameters(context, parameters):
    """``GET /v1/models/{model_id}`` asks for a configured model most of the time, the Responses
    paths for a response the demo user owns."""
    if parameters and "model_id" in parameters:
        return {**parameters, "model_id": pick(parameters, MODELS) or parameters["model_id"]}
    if parameters and "response_id" in parameters:
        return {**parameters, "response_id": pick(parameters, tuple(RESPONSE_IDS)) or parameters["response_id"]}
    return parameters


# GitLab Duo's operations carry the stand-in instance's JWT, minted once the stack is up (``fuzz_stack``),
# and the headers that go with it, as GitLab sends them, so their cases reach the endpoints' own checks
# and the models (tests/integration/test_duo.py tests each refusal of a token).
DUO_HEADERS: dict[str, str] = {}


def with_instance_token(case) -> None:
    """The headers, on every case but the coverage phase's that leaves the token out on purpose."""
    if "duo" not in (case.operation.tags or ()):  # the public ones ignore them
        return
    data = case._meta.phase.data if case._meta is not None else None
    if isinstance(data, CoveragePhaseData) and data.scenario == CoverageScenario.MISSING_PARAMETER and \
            (data.parameter or "").lower() == "authorization":
        return
    case.headers = {**(case.headers or {}), **DUO_HEADERS}


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    config = FUZZ_CONFIG.replace("{closed_port}", str(free_port()))
    with Stack(tmp_path_factory.mktemp("fuzz"), config, web_workers=2, web_threads=16) as gateway:
        DUO_HEADERS.update({"Authorization": f"Bearer {mint(gateway, claims={})}",
                            "X-Gitlab-Authentication-Type": "oidc", "X-Gitlab-Instance-Id": INSTANCE_ID,
                            "X-Gitlab-Realm": "self-managed", "X-Gitlab-User-Id": "2"})
        for model in ("claude-sonnet", "gpt-4o"):
            made = requests.post(f"{gateway.url}/v1/responses", json={"model": model, "input": "keep me"},
                                 headers={"Authorization": f"Bearer {DEMO_TOKEN}"}, timeout=REQUEST_TIMEOUT)
            RESPONSE_IDS.append(made.json()["id"])
        yield gateway


@schema.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_every_response_is_documented_and_safe(case, fuzz_stack) -> None:
    with_instance_token(case)
    response = case.call_and_validate(base_url=fuzz_stack.url)
    text = response.text
    seen = f"{response.status_code} {text[:2000]}\nfor: {case.as_curl_command()}"
    assert "Traceback" not in text, seen
    if response.status_code >= 500:
        assert response.status_code in DOCUMENTED_5XX, seen
    if response.status_code >= 400:
        assert_error_in_endpoint_format(case, response, seen)
        assert not INTERNAL_DETAIL.search(text), seen
        assert not EXCEPTION_NAMES.search(text), seen


def expects_anthropic(case) -> bool:
    """The wire format the endpoint answers in: Anthropic's on /v1/messages (and its count_tokens), and on /v1/models
    when the request names an ``anthropic-version`` (the Anthropic SDK always sends one)."""
    if case.path in ("/v1/messages", "/v1/messages/count_tokens"):
        return True
    if case.path.startswith("/v1/models"):
        headers = {name.lower(): value for name, value in (case.headers or {}).items()}
        return bool(str(headers.get("anthropic-version", "")).strip())
    return False


def assert_error_in_endpoint_format(case, response, seen: str) -> None:
    content_type = (response.headers.get("content-type") or [""])[0]  # schemathesis: lower-case names, lists
    assert content_type.startswith("application/json"), seen
    body = orjson.loads(response.content)
    status = response.status_code
    if "duo" in (case.operation.tags or ()):  # GitLab's AI gateway's: {"error"} 401, FastAPI's 422, {"detail"}
        if status == 401:
            assert set(body) == {"error"} and isinstance(body["error"], str), seen
        elif status == 422 and isinstance(body.get("detail"), list):
            assert set(body) == {"detail"} and all(isinstance(item["msg"], str) for item in body["detail"]), seen
        elif status >= 500 or body.get("error") is None:  # the web worker's own refusals are OpenAI's
            assert set(body) == {"detail"} and isinstance(body["detail"], str), seen
        return
    if expects_anthropic(case):
        assert set(body) == {"type", "error"} and body["type"] == "error", seen
        assert set(body["error"]) == {"type", "message"}, seen
        if status >= 500:
            assert body["error"]["type"] == ANTHROPIC_5XX[status], seen
    else:
        assert set(body) == {"error"}, seen
        assert set(body["error"]) == {"message", "type", "param", "code"}, seen
        if status >= 500:
            assert body["error"]["code"] in DOCUMENTED_5XX[status], seen


# -- bodies nested too deep ----------------------------------------------------------------------------

NESTING_BODIES = {
    "/v1/chat/completions": {"model": "gpt-4o", "messages": [{"role": "user", "content": "deep"}]},
    "/v1/completions": {"model": "gpt-4o", "prompt": "deep"},
    "/v1/embeddings": {"model": "gpt-4o", "input": "deep"},
    "/v1/messages": {"model": "claude-sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": "deep"}]},
    "/v1/responses": {"model": "gpt-4o", "input": "deep"},
}


def nested_body(path: str, depth: int) -> bytes:
    """The endpoint's body with an extra field holding lists nested so that the whole body (its own
    object the first level) is ``depth`` levels deep."""
    inner = depth - 1
    return orjson.dumps(NESTING_BODIES[path])[:-1] + b', "metadata_extra": ' + b"[" * inner + b"]" * inner + b"}"


@pytest.mark.parametrize("path", sorted(NESTING_BODIES))
def test_a_body_nested_1000_deep_is_refused_in_the_endpoint_format(fuzz_stack, path) -> None:
    """It answered 500 (orjson refuses to write the job past 254 levels); now 400, before the body
    reaches anything that recurses. The documented limit holds exactly: 64 levels go through."""
    headers = {"Authorization": f"Bearer {DEMO_TOKEN}", "Content-Type": "application/json"}
    deep = requests.post(f"{fuzz_stack.url}{path}", data=nested_body(path, 1000), headers=headers, timeout=30)
    over = requests.post(f"{fuzz_stack.url}{path}", data=nested_body(path, 65), headers=headers, timeout=30)
    for answer in (deep, over):
        assert answer.status_code == 400, answer.text
        if path == "/v1/messages":
            assert answer.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                                "message": answer.json()["error"]["message"]}}
        else:
            assert answer.json()["error"]["code"] == "invalid_request"
        assert "64 levels" in answer.text
    at_limit = requests.post(f"{fuzz_stack.url}{path}", data=nested_body(path, 64), headers=headers, timeout=30)
    assert at_limit.status_code == 200, at_limit.text
