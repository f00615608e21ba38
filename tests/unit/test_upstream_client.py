"""``UpstreamClient`` against a scripted local server: retries, error mapping, what goes on the wire."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from shared.errors import (
    DeadlineExceeded,
    RequestCancelled,
    UpstreamAuthError,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamRejected,
)
from tests.unit.upstream_fixtures import OK_BODY, SECRET, ScriptedServer, model_for
from workers import upstream
from workers.cancel import CLIENT_GONE, CancellableAdapter, CancelScope, enter_scope, leave_scope
from workers.upstream import UpstreamClient, UpstreamRequest


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


def test_answers_are_read_whole_and_their_connection_is_reused(server: ScriptedServer) -> None:
    server.answer((200, {}, OK_BODY))
    model = model_for(server.url)
    client = UpstreamClient(model)
    request = UpstreamRequest(url=model.base_url + "/chat/completions", body={"model": "m"})
    try:
        assert [client.post_json(request, deadline=time.time() + 10).data for _ in range(3)] == [OK_BODY] * 3
    finally:
        client.session.close()
    assert len({sent["client_port"] for sent in server.requests}) == 1  # one keep-alive connection


def test_a_compressed_answer_is_decoded(server: ScriptedServer, call) -> None:
    import gzip

    server.answer((200, {"Content-Type": "application/json", "Content-Encoding": "gzip"},
                   gzip.compress(json.dumps(OK_BODY).encode())))
    assert call(body={}).data == OK_BODY


def test_503_then_200_is_retried(server: ScriptedServer, call) -> None:
    server.answer((503, {}, {"error": {"message": "overloaded"}}), (200, {}, OK_BODY))
    result = call()
    assert result.status == 200
    assert result.data == OK_BODY
    assert result.attempts == 2
    assert result.retry_reasons == ["status_503"]
    assert len(server.requests) == 2


def test_tenacity_takes_over_only_once_an_attempt_has_failed(server: ScriptedServer, call, monkeypatch) -> None:
    import workers.upstream as upstream

    built = []
    real = upstream.upstream_retrying
    monkeypatch.setattr(upstream, "upstream_retrying", lambda **kw: built.append(kw) or real(**kw))
    server.answer((200, {}, OK_BODY))
    assert call().attempts == 1 and built == []
    server.script.clear()
    server.answer((503, {}, {"error": {"message": "busy"}}), (503, {}, {"error": {"message": "busy"}}),
                  (200, {}, OK_BODY))
    result = call()
    assert (result.attempts, result.retry_reasons, len(built)) == (3, ["status_503", "status_503"], 1)


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


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_reported_not_followed(server: ScriptedServer, call, status: int) -> None:
    server.answer((status, {"Location": "http://elsewhere.invalid/v1/chat/completions"}, b""))
    with pytest.raises(UpstreamError) as info:
        call()
    assert info.value.status == 502
    assert f"redirect (HTTP {status})" in info.value.message
    assert "elsewhere.invalid" in info.value.message
    assert "base_url" in info.value.message
    assert len(server.requests) == 1  # not followed, not retried


def test_one_call_s_headers_never_reach_the_next(server: ScriptedServer) -> None:
    server.answer((200, {}, OK_BODY))
    model = model_for(server.url)
    client = UpstreamClient(model)
    url = model.base_url + "/chat/completions"
    try:
        client.post_json(UpstreamRequest(url, {"model": "m", "n": 1}, {"X-Request-Id": "first", "X-Only-First": "1"}),
                         deadline=time.time() + 10)
        client.post_json(UpstreamRequest(url, {"model": "m"}, {"X-Request-Id": "second"}), deadline=time.time() + 10)
    finally:
        client.session.close()
    first, second = (request["headers"] for request in server.requests)
    assert (first["X-Request-Id"], second["X-Request-Id"]) == ("first", "second")
    assert "X-Only-First" not in second
    for sent in server.requests:
        assert sent["headers"]["Content-Type"] == "application/json"
        assert int(sent["headers"]["Content-Length"]) == len(sent["body"])
    assert json.loads(server.requests[1]["body"]) == {"model": "m"}


def test_a_provider_s_cookies_are_never_sent_back(server: ScriptedServer) -> None:
    server.answer((200, {"Set-Cookie": "session=from-provider; Path=/"}, OK_BODY))
    model = model_for(server.url)
    client = UpstreamClient(model)
    try:
        for _ in range(2):
            client.post_json(UpstreamRequest(model.base_url + "/chat/completions", {"model": "m"}),
                             deadline=time.time() + 10)
    finally:
        client.session.close()
    assert len(server.requests) == 2
    assert "Cookie" not in server.requests[1]["headers"]


@pytest.mark.parametrize("script", [[(503, {}, {"error": {"message": "busy"}}), (200, {}, OK_BODY)],
                                    [(500, {}, {"error": {"message": "down"}})]])
def test_the_request_sent_hook_runs_once_per_job_whatever_the_attempts(server: ScriptedServer, script) -> None:
    server.answer(*script)
    model = model_for(server.url, attempts=2)
    client = UpstreamClient(model)
    scope = CancelScope("j1")
    on_the_wire: list[int] = []
    scope.on_request_sent = lambda: on_the_wire.append(len(on_the_wire))
    token = enter_scope(scope)
    try:
        client.post_json(UpstreamRequest(model.base_url + "/chat/completions", {"model": "m"}),
                         deadline=time.time() + 10)
    except UpstreamError:
        pass
    finally:
        leave_scope(token)
        client.session.close()
    assert len(server.requests) == 2
    assert on_the_wire == [0]
    assert scope.on_request_sent is None


def test_one_client_calls_several_origins_and_never_uses_a_closed_pool(server: ScriptedServer) -> None:
    other = ScriptedServer()
    other.thread.start()
    try:
        server.answer((200, {}, OK_BODY))
        other.answer((200, {}, {**OK_BODY, "id": "from-other"}))
        model = model_for(server.url)
        client = UpstreamClient(model)

        def ask(base: str) -> str:
            return client.post_json(UpstreamRequest(f"{base}/v1/chat/completions", {"model": "m"}),
                                    deadline=time.time() + 10).data["id"]

        try:
            answers = [ask(server.url), ask(other.url), ask(server.url)]
            for pool in list(client.adapter._pools_by_origin.values()):
                pool.close()  # as urllib3 does to a pool it is done with
            answers += [ask(server.url), ask(other.url)]
        finally:
            client.session.close()
    finally:
        other.httpd.shutdown()
        other.httpd.server_close()
    assert answers == ["chatcmpl-1", "from-other", "chatcmpl-1", "chatcmpl-1", "from-other"]
    assert (len(server.requests), len(other.requests)) == (3, 2)  # one attempt each: nothing failed


def test_tls_settings_reach_the_pool_once_and_stay(tmp_path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not really a bundle")
    adapter = CancellableAdapter()
    request = requests.Request("POST", "https://provider.invalid/v1/chat/completions").prepare()
    pool = adapter.get_connection_with_tls_context(request, str(bundle))
    assert adapter.get_connection_with_tls_context(request, str(bundle)) is pool
    adapter.cert_verify(pool, request.url, str(bundle), None)
    assert (pool.cert_reqs, pool.ca_certs) == ("CERT_REQUIRED", str(bundle))
    unverified = adapter.get_connection_with_tls_context(request, False)
    assert unverified is not pool  # another TLS setting, another pool
    adapter.cert_verify(unverified, request.url, False, None)
    assert unverified.cert_reqs == "CERT_NONE"
    assert pool.cert_reqs == "CERT_REQUIRED"
    with pytest.raises(OSError, match="invalid path"):  # a missing bundle is still refused
        adapter.cert_verify(adapter.get_connection_with_tls_context(request, str(tmp_path / "gone.pem")),
                            request.url, str(tmp_path / "gone.pem"), None)
    adapter.close()
