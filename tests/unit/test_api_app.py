"""The Falcon app in process, with a Redis that cannot be reached (port 1).

Only what needs no Redis, or must fail cleanly without it, is tested here.
"""

from __future__ import annotations

import json
import re
import time

import falcon.testing
import pytest

from api.app import create_app
from api.identity import Identity
from shared.config import parse_config
from shared.settings import Settings

MAX_BODY = 1000
HEX32 = re.compile(r"^[0-9a-f]{32}$")
CHAT = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}
CHUNKED = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
NO_LENGTH = {"CONTENT_LENGTH": ""}  # what a WSGI server passes for a chunked body


class FixedIdentity:
    """GitLab verification is the integration tests' business; here everyone is one user."""

    def identify(self, req) -> Identity:
        return Identity("2", "alice", credential="token")


@pytest.fixture(scope="module")
def client() -> falcon.testing.TestClient:
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://127.0.0.1:9/v1"}]}, {})
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", max_body_bytes=MAX_BODY), config,
                     authenticator=FixedIdentity())
    return falcon.testing.TestClient(app)


def test_without_a_credential_the_real_authenticator_answers_401() -> None:
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://127.0.0.1:9/v1"}]}, {})
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0", gitlab_url="http://127.0.0.1:9"), config)
    result = falcon.testing.TestClient(app).simulate_post(CHAT, json=chat_body())
    error = assert_openai_error(result, 401, "missing_credentials", error_type="authentication_error")
    assert "Authorization: Bearer" in error["message"]


def chat_body(model: str = "m", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}


def assert_openai_error(result, status: int, code: str, *, param: str | None = None,
                        error_type: str = "invalid_request_error") -> dict:
    assert result.status_code == status, result.text
    assert result.headers["Content-Type"].startswith("application/json")
    body = result.json
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["type"] == error_type
    assert error["param"] == param
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in result.text
    return error


def test_health(client) -> None:
    result = client.simulate_get("/health")
    assert result.status_code == 200
    assert result.json == {"status": "ok"}


def test_trailing_slash_is_ignored(client) -> None:
    assert client.simulate_get("/health/").status_code == 200


def test_ready_is_503_when_redis_is_down(client) -> None:
    result = client.simulate_get("/ready")
    assert result.status_code == 503
    assert result.json["status"] == "unavailable"
    assert result.json["redis"]["ok"] is False
    assert "Traceback" not in result.text


def test_models_lists_the_configured_model(client) -> None:
    result = client.simulate_get("/v1/models")
    assert result.status_code == 200
    assert result.json["object"] == "list"
    assert [m["id"] for m in result.json["data"]] == ["m"]
    assert result.json["data"][0] == {"id": "m", "object": "model", "created": 0, "owned_by": "generic"}


def test_one_model(client) -> None:
    result = client.simulate_get("/v1/models/m")
    assert result.status_code == 200
    assert result.json["id"] == "m"
    missing = client.simulate_get("/v1/models/other")
    assert_openai_error(missing, 404, "model_not_found", param="model")


def test_malformed_json_is_400_invalid_json(client) -> None:
    result = client.simulate_post(CHAT, body='{"model": "m", "messages": [', headers=JSON)
    error = assert_openai_error(result, 400, "invalid_json")
    assert "JSON" in error["message"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e999"])
def test_numbers_json_has_no_such_thing_as_are_400_invalid_json(client, value: str) -> None:
    body = '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": ' + value + "}"
    assert_openai_error(client.simulate_post(CHAT, body=body, headers=JSON), 400, "invalid_json")


def test_an_empty_body_is_400(client) -> None:
    result = client.simulate_post(CHAT, headers=JSON)
    assert_openai_error(result, 400, "invalid_request")


def test_a_body_that_is_not_an_object_is_400(client) -> None:
    result = client.simulate_post(CHAT, json=["model", "m"])
    assert_openai_error(result, 400, "invalid_request")


def test_missing_messages_is_400_with_its_param(client) -> None:
    result = client.simulate_post(CHAT, json={"model": "m"})
    assert_openai_error(result, 400, "invalid_request", param="messages")


def test_body_over_the_limit_with_content_length_is_413(client) -> None:
    body = json.dumps(chat_body(padding="x" * MAX_BODY))
    assert len(body) > MAX_BODY
    result = client.simulate_post(CHAT, body=body, headers=JSON)
    error = assert_openai_error(result, 413, "payload_too_large")
    assert str(MAX_BODY) in error["message"]
    assert result.headers.get("Connection") == "close"


def test_body_over_the_limit_on_an_anthropic_endpoint_is_413_in_anthropics_format(client) -> None:
    body = json.dumps(chat_body(padding="x" * MAX_BODY))
    result = client.simulate_post("/v1/messages", body=body, headers=JSON)
    assert result.status_code == 413
    assert result.json["type"] == "error"
    assert result.json["error"]["type"] == "request_too_large"


def test_body_at_the_limit_is_accepted(client) -> None:
    body = json.dumps(chat_body(model="nope"))
    body = body[:-1] + " " * (MAX_BODY - len(body)) + "}"
    assert len(body) == MAX_BODY
    result = client.simulate_post(CHAT, body=body, headers=JSON)
    assert_openai_error(result, 404, "model_not_found", param="model")  # parsed, then routed


def test_chunked_body_over_the_limit_is_413(client) -> None:
    body = json.dumps(chat_body(padding="x" * MAX_BODY))
    result = client.simulate_post(CHAT, body=body, headers=CHUNKED, extras=NO_LENGTH)
    assert_openai_error(result, 413, "payload_too_large")
    assert result.headers.get("Connection") == "close"


def test_chunked_body_under_the_limit_is_read(client) -> None:
    result = client.simulate_post(CHAT, body=json.dumps(chat_body(model="nope")), headers=CHUNKED,
                                  extras=NO_LENGTH)
    # the model name was read from the body: it was not taken as empty
    error = assert_openai_error(result, 404, "model_not_found", param="model")
    assert "'nope'" in error["message"]


def test_unknown_model_is_404_model_not_found(client) -> None:
    result = client.simulate_post(CHAT, json=chat_body(model="gpt-nope"))
    error = assert_openai_error(result, 404, "model_not_found", param="model")
    assert "gpt-nope" in error["message"]


def test_unknown_path_is_404(client) -> None:
    result = client.simulate_get("/v1/nothing-here")
    error = assert_openai_error(result, 404, "not_found")
    assert "/v1/nothing-here" in error["message"]


def test_wrong_method_is_405(client) -> None:
    result = client.simulate_get(CHAT)
    assert_openai_error(result, 405, "method_not_allowed")
    assert "POST" in result.headers.get("Allow", "")
    assert client.simulate_delete("/health").status_code == 405


def test_text_plain_is_415(client) -> None:
    result = client.simulate_post(CHAT, body=json.dumps(chat_body()), headers={"Content-Type": "text/plain"})
    assert_openai_error(result, 415, "unsupported_media_type")


def test_stream_must_be_a_boolean(client) -> None:
    result = client.simulate_post(CHAT, json=chat_body(stream="yes"))
    assert_openai_error(result, 400, "invalid_request", param="stream")


def test_messages_errors_come_in_anthropics_format(client) -> None:
    result = client.simulate_post("/v1/messages", json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert result.status_code == 400
    assert result.json == {"type": "error", "error": {"type": "invalid_request_error",
                                                      "message": "max_tokens: field required."}}


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])  # n is the provider's to judge
@pytest.mark.parametrize("value", [0, -1, "5", True, 1.5])
def test_bad_counts_are_400(client, field: str, value) -> None:
    result = client.simulate_post(CHAT, json=chat_body(**{field: value}))
    assert_openai_error(result, 400, "invalid_request", param=field)


@pytest.mark.parametrize("request_id", ["abc-123", "req_1.2:3", "A" * 128])
def test_a_sane_request_id_is_echoed(client, request_id: str) -> None:
    for result in (client.simulate_get("/health", headers={"X-Request-Id": request_id}),
                   client.simulate_get("/nope", headers={"X-Request-Id": request_id})):
        assert result.headers["X-Request-Id"] == request_id


@pytest.mark.parametrize("request_id", ["has space", "A" * 129, "-leading-dash", "semi;colon", "new\u00e9"])
def test_an_insane_request_id_is_replaced(client, request_id: str) -> None:
    result = client.simulate_get("/health", headers={"X-Request-Id": request_id})
    assert result.headers["X-Request-Id"] != request_id
    assert HEX32.match(result.headers["X-Request-Id"])


def test_a_request_id_is_made_when_none_is_sent(client) -> None:
    first = client.simulate_get("/health").headers["X-Request-Id"]
    second = client.simulate_get("/health").headers["X-Request-Id"]
    assert HEX32.match(first) and HEX32.match(second)
    assert first != second


def test_a_valid_chat_request_without_redis_is_a_clean_503(client) -> None:
    started = time.monotonic()
    result = client.simulate_post(CHAT, json=chat_body(), headers={"X-Request-Id": "req-503"})
    assert time.monotonic() - started < 5  # fails fast, no hanging on Redis
    error = assert_openai_error(result, 503, "service_unavailable", error_type="api_error")
    assert "Redis" in error["message"]
    assert result.headers["Retry-After"] == "1"
    assert result.headers["X-Request-Id"] == "req-503"
    assert "redis.exceptions" not in result.text
    assert "127.0.0.1:1" not in result.text
