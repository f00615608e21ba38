"""Work a request defers until its response has gone out: its access record and metrics.

Written before the response, they made every answer wait for a log line's
formatting and writing (at the default level) and the metrics' updates. The
server calls the response body's ``close()`` once it has sent the whole body
(PEP 3333); ``AfterResponse`` runs what the request deferred there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

log = logging.getLogger("aigw.api")
DEFERRED = "aigw.after_response"  # the environ key holding a request's deferred callables


def after_response(req, callback: Callable[[], None]) -> None:
    """Run ``callback`` once ``req``'s response has been sent (or the client has gone)."""
    req.env.setdefault(DEFERRED, []).append(callback)


class AfterResponse:
    """WSGI wrapper around the app: hands the server a body whose ``close()`` runs the
    request's deferred work after the body's own ``close()``."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        body = self.app(environ, start_response)
        deferred = environ.get(DEFERRED)
        return _Closing(body, deferred) if deferred else body


class _Closing:
    def __init__(self, body: Iterable[bytes], deferred: list[Callable[[], None]]):
        self.body = body
        self.deferred = deferred

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            for callback in self.deferred:
                try:
                    callback()
                except Exception:  # the response is out; one failure must not skip the rest
                    log.exception("deferred work after a response failed")
