"""One upstream call: header and body helpers, and ``UpstreamClient`` against a scripted local server."""

from __future__ import annotations

import email.utils
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from requests.structures import CaseInsensitiveDict

import workers.upstream as upstream
from shared.config import ModelConfig, parse_config
from shared.errors import (
    DeadlineExceeded,
    RequestCancelled,
    UpstreamAuthError,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
)
from workers.cancel import CLIENT_GONE, CancelScope, enter_scope, leave_scope
from workers.upstream import (
    UpstreamClient,
    UpstreamRequest,
    cancelled_error,
    error_message_from,
    retry_after_seconds,
)

SECRET = "sk-secret-value"


def response_with(headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = 429
    response.headers = CaseInsensitiveDict(headers)
    return response


# -- retry_after_seconds ----------------------------------------------------------

def test_retry_after_ms_is_read_in_milliseconds() -> None:
    assert retry_after_seconds(response_with({"retry-after-ms": "1500"})) == 1.5


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_seconds(response_with({"retry-after-ms": "250", "Retry-After": "9"})) == 0.25


def test_bad_retry_after_ms_falls_back_to_retry_after() -> None:
    assert retry_after_seconds(response_with({"retry-after-ms": "soon", "Retry-After": "4"})) == 4.0


@pytest.mark.parametrize(("value", "seconds"), [("7", 7.0), ("0", 0.0), ("2.5", 2.5), ("-3", 0.0)])
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert retry_after_seconds(response_with({"Retry-After": value})) == seconds


def test_retry_after_header_name_is_case_insensitive() -> None:
    assert retry_after_seconds(response_with({"retry-after": "3"})) == 3.0


def test_retry_after_as_an_http_date() -> None:
    value = email.utils.formatdate(time.time() + 5, usegmt=True)  # whole seconds: 4 < wait <= 5
    seconds = retry_after_seconds(response_with({"Retry-After": value}))
    assert seconds is not None
    assert 3.5 <= seconds <= 5.5


def test_retry_after_date_in_the_past_is_zero() -> None:
    value = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after_seconds(response_with({"Retry-After": value})) == 0.0


@pytest.mark.parametrize("value", ["soon", "tomorrow-ish", "Mon, 99 Foo 2020"])
def test_retry_after_garbage_is_none(value: str) -> None:
    assert retry_after_seconds(response_with({"Retry-After": value})) is None


def test_no_retry_after_is_none() -> None:
    assert retry_after_seconds(response_with({})) is None
    assert retry_after_seconds(response_with({"Retry-After": ""})) is None


# -- error_message_from --------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}}, "Incorrect API key"),
        ({"error": {"type": "overloaded_error"}}, "overloaded_error"),
        ({"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too big"}},
         "max_tokens: too big"),
        ({"error": "model 'llama9' not found, try pulling it first"}, "model 'llama9' not found, try pulling it first"),
        ({"detail": "Not Found"}, "Not Found"),
        ({"message": "Internal Server Error"}, "Internal Server Error"),
        ({}, ""),
        (None, ""),
        ([], ""),
    ],
)
def test_error_message_shapes(data, message: str) -> None:
    assert error_message_from(data) == message


def test_error_message_from_a_list_is_its_json() -> None:
    data = [{"loc": ["body", "messages"], "msg": "field required"}]
    assert json.loads(error_message_from(data)) == data


def test_error_message_from_a_fastapi_validation_detail_is_its_json() -> None:
    data = {"detail": [{"loc": ["body", "model"], "msg": "field required"}]}
    assert json.loads(error_message_from(data)) == data


def test_error_message_from_a_large_body_is_cut() -> None:
    data = [{"x": "y" * 2000}]
    assert len(error_message_from(data)) == upstream.MAX_MESSAGE


def test_cancelled_error_by_reason() -> None:
    scope = CancelScope("j")
    scope.cancel(CLIENT_GONE)
    assert isinstance(cancelled_error(scope), RequestCancelled)
    shutdown = CancelScope("j")
    shutdown.cancel("shutdown")
    assert cancelled_error(shutdown).status == 503
    deadline = CancelScope("j")
    deadline.cancel("deadline")
    assert isinstance(cancelled_error(deadline), DeadlineExceeded)


# -- UpstreamClient against a scripted server ---------------------------------------

class ScriptedServer:
    """Answers each request with the next scripted (status, headers, body); the last one repeats."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # http.server names it so
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with owner.lock:
                    owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status, headers, payload = owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format, *args) -> None:  # http.server calls it so
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def answer(self, *script: tuple[int, dict[str, str], bytes | dict | str]) -> None:
        for status, headers, body in script:
            if isinstance(body, dict):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **headers}
            elif isinstance(body, str):
                body = body.encode()
            self.script.append((status, headers, body))


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    scripted.thread.start()
    yield scripted
    scripted.httpd.shutdown()
    scripted.httpd.server_close()
    scripted.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the backoff between attempts to milliseconds."""
    real = upstream.upstream_retrying
    monkeypatch.setattr(upstream, "upstream_retrying", lambda **kw: real(**{**kw, "initial_wait": 0.01}))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def model_for(url: str, attempts: int = 3) -> ModelConfig:
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": url + "/v1",
                                       "api_key": SECRET, "retries": {"attempts": attempts}}]}, {})
    return config.models[0]


@pytest.fixture
def call(server: ScriptedServer) -> Iterator:
    clients: list[UpstreamClient] = []

    def post(attempts: int = 3, body: dict | None = None, timeout: float = 10.0):
        model = model_for(server.url, attempts)
        client = UpstreamClient(model)
        clients.append(client)
        request = UpstreamRequest(url=model.base_url + "/chat/completions", body=body or {"model": "m"},
                                  headers={"Authorization": f"Bearer {model.api_key}"})
        return client.post_json(request, deadline=time.time() + timeout)

    yield post
    for client in clients:
        client.session.close()


OK_BODY = {"id": "chatcmpl-1", "choices": [{"message": {"role": "assistant", "content": "hi"}}]}


def test_success_on_the_first_attempt(server: ScriptedServer, call) -> None:
    server.answer((200, {}, OK_BODY))
    result = call(body={"model": "m", "messages": [{"role": "user", "content": "hello"}]})
    assert (result.status, result.data, result.attempts, result.retry_reasons) == (200, OK_BODY, 1, [])
    assert result.seconds >= 0
    assert len(server.requests) == 1
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert json.loads(sent["body"]) == {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_503_then_200_is_retried(server: ScriptedServer, call) -> None:
    server.answer((503, {}, {"error": {"message": "overloaded"}}), (200, {}, OK_BODY))
    result = call()
    assert result.status == 200
    assert result.data == OK_BODY
    assert result.attempts == 2
    assert result.retry_reasons == ["status_503"]
    assert len(server.requests) == 2


def test_always_500_fails_after_every_attempt(server: ScriptedServer, call) -> None:
    server.answer((500, {}, {"error": {"message": "kaboom"}}))
    with pytest.raises(UpstreamError) as info:
        call(attempts=3)
    assert type(info.value) is UpstreamError
    assert "3 attempts" in info.value.message
    assert "HTTP 500" in info.value.message
    assert "kaboom" in info.value.message
    assert info.value.status == 502
    assert info.value.should_retry is False
    assert len(server.requests) == 3


def test_one_attempt_is_singular(server: ScriptedServer, call) -> None:
    server.answer((502, {}, "bad gateway"))
    with pytest.raises(UpstreamError) as info:
        call(attempts=1)
    assert "after 1 attempt;" in info.value.message
    assert "bad gateway" in info.value.message
    assert len(server.requests) == 1


def test_401_is_an_auth_error_that_never_shows_the_key(server: ScriptedServer, call) -> None:
    server.answer((401, {}, {"error": {"message": f"Incorrect API key provided: {SECRET}."}}))
    with pytest.raises(UpstreamAuthError) as info:
        call()
    error = info.value
    assert error.status == 502
    assert "HTTP 401" in error.message
    assert SECRET not in error.message
    assert SECRET not in str(error)
    assert SECRET not in json.dumps(error.to_dict())
    assert len(server.requests) == 1  # not retried


def test_403_is_an_auth_error_too(server: ScriptedServer, call) -> None:
    server.answer((403, {}, {"error": "forbidden"}))
    with pytest.raises(UpstreamAuthError, match="HTTP 403"):
        call()


def test_404_means_the_configured_model_is_wrong(server: ScriptedServer, call) -> None:
    server.answer((404, {}, {"error": "model 'm' not found"}))
    with pytest.raises(UpstreamModelNotFound) as info:
        call()
    assert "'m'" in info.value.message
    assert len(server.requests) == 1


def test_422_is_passed_through_with_the_provider_message(server: ScriptedServer, call) -> None:
    server.answer((422, {}, {"detail": "messages: field required"}))
    with pytest.raises(UpstreamRejected) as info:
        call()
    assert info.value.status == 422
    assert info.value.message == "messages: field required"
    assert info.value.code == "upstream_invalid_request"
    assert len(server.requests) == 1


def test_a_passed_through_message_has_the_key_redacted(server: ScriptedServer, call) -> None:
    server.answer((400, {}, {"error": {"message": f"key {SECRET} cannot use   this\nmodel"}}))
    with pytest.raises(UpstreamRejected) as info:
        call()
    assert info.value.status == 400
    assert SECRET not in info.value.message
    assert info.value.message == "key [redacted] cannot use this model"


def test_an_exhausted_error_has_the_key_redacted(server: ScriptedServer, call) -> None:
    server.answer((500, {}, f"upstream failed for key {SECRET}"))
    with pytest.raises(UpstreamError) as info:
        call(attempts=2)
    assert SECRET not in info.value.message
    assert "[redacted]" in info.value.message


def test_429_every_time_is_rate_limited(server: ScriptedServer, call) -> None:
    server.answer((429, {"Retry-After": "0"}, {"error": {"message": "Rate limit reached"}}))
    started = time.monotonic()
    with pytest.raises(UpstreamRateLimited) as info:
        call(attempts=3)
    assert time.monotonic() - started < 2.0  # Retry-After: 0 means no waiting
    assert info.value.status == 429
    assert info.value.retry_after == 0.0
    assert "3 attempts" in info.value.message
    assert "Rate limit reached" in info.value.message
    assert len(server.requests) == 3


def test_retry_after_ms_is_carried_on_the_rate_limit_error(server: ScriptedServer, call) -> None:
    server.answer((429, {"retry-after-ms": "20"}, {"error": "slow"}))
    with pytest.raises(UpstreamRateLimited) as info:
        call(attempts=2)
    assert info.value.retry_after == 0.02
    assert len(server.requests) == 2


def test_a_body_that_is_not_json_is_an_upstream_error(server: ScriptedServer, call) -> None:
    server.answer((200, {"Content-Type": "text/html"}, "<html>hello</html>"))
    with pytest.raises(UpstreamError, match="not JSON"):
        call()
    assert len(server.requests) == 1


def test_a_json_list_is_an_unexpected_shape(server: ScriptedServer, call) -> None:
    server.answer((200, {"Content-Type": "application/json"}, "[1, 2]"))
    with pytest.raises(UpstreamError, match="unexpected JSON shape"):
        call()


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # the port is closed again: nothing listens there
    model = model_for(f"http://127.0.0.1:{port}", attempts=2)
    client = UpstreamClient(model)
    try:
        with pytest.raises(UpstreamError) as info:
            client.post_json(UpstreamRequest(url=model.base_url + "/chat/completions", body={}),
                             deadline=time.time() + 10)
    finally:
        client.session.close()
    assert "2 attempts" in info.value.message
    assert "could not connect" in info.value.message


def test_a_passed_deadline_is_deadline_exceeded_without_a_call(server: ScriptedServer, call) -> None:
    server.answer((200, {}, OK_BODY))
    with pytest.raises(DeadlineExceeded):
        call(timeout=-1)
    assert server.requests == []


def test_a_cancelled_scope_stops_before_calling(server: ScriptedServer) -> None:
    server.answer((200, {}, OK_BODY))
    model = model_for(server.url)
    client = UpstreamClient(model)
    scope = CancelScope("j1")
    scope.cancel(CLIENT_GONE)
    token = enter_scope(scope)
    try:
        with pytest.raises(RequestCancelled):
            client.post_json(UpstreamRequest(url=model.base_url + "/chat/completions", body={}),
                             deadline=time.time() + 10)
    finally:
        leave_scope(token)
        client.session.close()
    assert server.requests == []
