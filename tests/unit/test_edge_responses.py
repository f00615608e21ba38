"""Answers the web worker writes itself (api.edge_responses)."""

from __future__ import annotations

import json

import pytest

from api.edge_responses import RequestTimeout, TooManyConnections, gunicorn_refusal, response, too_large, wire_for


def parse(data: bytes) -> tuple[str, dict[str, str], dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = dict(field.split(": ", 1) for field in fields)
    assert int(headers["Content-Length"]) == len(body)
    return status, headers, json.loads(body)


@pytest.mark.parametrize(("path", "anthropic_version", "wire"), [
    ("/v1/messages", False, "anthropic"),
    ("/v1/messages/", False, "anthropic"),
    ("/v1/chat/completions", True, "openai"),
    ("/v1/models", True, "anthropic"),
    ("/v1/models/claude", True, "anthropic"),
    ("/v1/models", False, "openai"),
    ("/health", False, "openai"),
    ("/v2/code/completions", False, "duo"),
    ("/v1/prompts/model_configuration%2Fcheck", False, "duo"),
    ("/v1/responses", False, "openai"),
    ("/v1/completions", False, "openai"),
])
def test_the_endpoints_format(path: str, anthropic_version: bool, wire: str) -> None:
    assert wire_for(path, anthropic_version) == wire


def test_every_gitlab_duo_path_answers_in_duo_format_and_no_other() -> None:
    """The web worker's refusals follow the app's routes: each of GitLab Duo's paths (api.duo.routes,
    whose resources only keep the object they are given) is Duo's, and no other route of the app."""
    from api.duo import routes

    duo_paths = {path.replace("{tool}", "explain_code") for path in routes(object())}
    assert duo_paths and all(wire_for(path, False) == "duo" for path in duo_paths)
    others = ["/", "/health", "/ready", "/metrics", "/admin/queues", "/v1/models", "/v1/chat/completions",
              "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/responses/resp_1", "/v1/messages",
              "/v1/messages/count_tokens"]
    assert [path for path in others if wire_for(path, False) == "duo"] == []


def test_duo_format() -> None:
    _, _, body = parse(response(RequestTimeout("slow"), wire="duo"))
    assert body == {"detail": "slow"}


def test_openai_format_with_retry_after_and_close() -> None:
    status, headers, body = parse(response(TooManyConnections(retry_after=1), request_id_sent="abc-1"))
    assert status == "HTTP/1.1 429 Too Many Requests"
    assert headers["Retry-After"] == "1" and headers["Connection"] == "close"
    assert headers["X-Request-Id"] == "abc-1" and headers["Content-Type"] == "application/json"
    assert body == {"error": {"message": "Too many connections from your address.", "type": "rate_limit_error",
                              "param": None, "code": "too_many_connections"}}


def test_anthropic_format() -> None:
    _, _, body = parse(response(RequestTimeout("slow"), wire="anthropic"))
    assert body == {"type": "error", "error": {"type": "invalid_request_error", "message": "slow"}}


def test_an_insane_request_id_is_replaced() -> None:
    _, headers, _ = parse(response(too_large(10), request_id_sent="bad id\r\nX-Injected: 1"))
    assert "X-Injected" not in headers and len(headers["X-Request-Id"]) == 32


def test_413_names_the_limit() -> None:
    status, _, body = parse(response(too_large(65536)))
    assert status.startswith("HTTP/1.1 413 ")
    assert body["error"]["code"] == "payload_too_large" and "65536" in body["error"]["message"]


def test_gunicorns_500_keeps_its_details_to_the_log() -> None:
    error = gunicorn_refusal(500, "Internal Server Error", "Traceback (most recent call last): ...")
    assert (error.status, error.code) == (500, "internal_error") and "Traceback" not in error.message
    unsupported = gunicorn_refusal(501, "Not Implemented", "Unsupported transfer coding: 'br'")
    assert (unsupported.status, unsupported.code) == (501, "unsupported_transfer_coding")
