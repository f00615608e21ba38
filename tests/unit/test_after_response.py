"""Work deferred until a response has gone out: run by the body's close(), as servers call it."""

from __future__ import annotations

from types import SimpleNamespace

from api.after_response import AfterResponse, after_response


class Body(list):
    closed = False

    def close(self) -> None:
        self.closed = True


def serve(app, environ: dict) -> tuple[list[bytes], object]:
    """What a WSGI server does: call the app, send every chunk, then close the body."""
    body = app(environ, lambda status, headers: None)
    sent = list(body)
    return sent, body


def test_deferred_work_runs_only_once_the_body_is_closed_and_after_its_own_close():
    events: list[str] = []
    inner = Body([b"answer"])

    def app(environ, start_response):
        req = SimpleNamespace(env=environ)
        after_response(req, lambda: events.append(f"logged, body closed: {inner.closed}"))
        after_response(req, lambda: events.append("metrics"))
        return inner

    sent, body = serve(AfterResponse(app), {})
    assert sent == [b"answer"] and events == []  # the whole body went out first
    body.close()
    assert events == ["logged, body closed: True", "metrics"]


def test_one_failing_callable_does_not_skip_the_others(caplog):
    events: list[str] = []

    def app(environ, start_response):
        req = SimpleNamespace(env=environ)
        after_response(req, lambda: 1 / 0)
        after_response(req, lambda: events.append("still ran"))
        return [b"x"]

    _, body = serve(AfterResponse(app), {})
    body.close()
    assert events == ["still ran"]
    assert "deferred work after a response failed" in caplog.text


def test_a_request_that_deferred_nothing_gets_its_body_back_as_it_was():
    inner = Body([b"plain"])
    assert AfterResponse(lambda environ, start_response: inner)({}, None) is inner
