"""Per-request context: request id, body-size check, identity, and the access log."""

from __future__ import annotations

import io
import logging
import re
import time
import uuid

from api.after_response import after_response
from api.identity import Authenticator
from api.media import too_large
from shared import metrics
from shared.logs import current_request_id
from shared.usage import token_counts

log = logging.getLogger("aigw.access")
AUTH_FAILURE_CODES = frozenset({"missing_credentials", "invalid_credentials", "user_blocked", "insufficient_access",
                                "project_mismatch", "project_not_found", "no_route", "gitlab_unavailable",
                                "invalid_instance_token", "missing_unit_primitive"})

# A caller's request id is echoed in headers and logs: keep it short and inert.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
# The client's session, for the access record: Claude Code's header, else Codex's (tests/clients/TRAFFIC.md).
SESSION_HEADERS = ("X-Claude-Code-Session-Id", "Session-Id")
# Query parameters whose values the access record never shows: the gateway takes no credential in a
# query, but a client may put one there all the same.
_SECRET_QUERY_NAME = re.compile(r"key|token|secret|passw|auth|sig|credential", re.IGNORECASE)


def request_id_from(header: str | None) -> str:
    if header and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def session_id_from(req) -> str | None:
    """The client's session id, if it sent a sane one (as short and inert as a request id)."""
    for name in SESSION_HEADERS:
        value = req.get_header(name)
        if value:
            return value if _SANE_REQUEST_ID.fullmatch(value) else None
    return None


def logged_path(req) -> str:
    """The path with its query string (``?beta=true``), credential-like values redacted."""
    query = req.query_string
    if not query:
        return req.path
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}=[redacted]" if sep and _SECRET_QUERY_NAME.search(name) else part)
    return f"{req.path}?{'&'.join(parts)}"


class RequestContext:
    def __init__(self, max_body_bytes: int):
        self.max_body_bytes = max_body_bytes

    def process_request(self, req, resp) -> None:
        ctx = req.context
        ctx.started = time.perf_counter()
        ctx.request_id = request_id_from(req.get_header("X-Request-Id"))
        ctx.log_token = current_request_id.set(ctx.request_id)  # every record of this request carries it
        # Anthropic's format under /v1/messages, an unknown path included; a resource may say otherwise.
        ctx.wire = "anthropic" if req.path == "/v1/messages" or req.path.startswith("/v1/messages/") else "openai"
        ctx.log = {}
        session = session_id_from(req)
        if session is not None:
            ctx.log["session_id"] = session
        resp.set_header("X-Request-Id", ctx.request_id)

    def process_resource(self, req, resp, resource, params) -> None:
        """Once routed: the resource's wire format first, so that every refusal from here on
        (a body too large, a credential) comes in the endpoint's own error format."""
        if resource is not None:
            req.context.endpoint = getattr(resource, "endpoint", None)  # labels the request metrics
            wire_for = getattr(resource, "wire_for", None)
            req.context.wire = wire_for(req) if wire_for else getattr(resource, "wire", "openai")
        if req.content_length is not None:
            if req.content_length > self.max_body_bytes:
                raise too_large(self.max_body_bytes)
        elif "chunked" in (req.get_header("Transfer-Encoding") or "").lower():
            self._buffer_chunked_body(req)

    def _buffer_chunked_body(self, req) -> None:
        """A chunked body has no length, and Falcon then reads it as empty: read it
        here, at most one byte past the cap, and hand Falcon a sized body."""
        data = req.env["wsgi.input"].read(self.max_body_bytes + 1)
        if len(data) > self.max_body_bytes:
            raise too_large(self.max_body_bytes)
        req.env["wsgi.input"] = io.BytesIO(data)
        req.env["CONTENT_LENGTH"] = str(len(data))

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        ctx = req.context
        if not hasattr(ctx, "request_id"):
            return
        resp.set_header("X-Request-Id", ctx.request_id)
        if getattr(ctx, "log_token", None) is not None:
            current_request_id.reset(ctx.log_token)  # the thread serves other requests next
            ctx.log_token = None
        for name, value in getattr(ctx, "rate_headers", {}).items():  # every response a limit touched
            resp.set_header(name, value)
        if getattr(resource, "access_log", True) is False and resp.status_code < 400:
            return
        if getattr(ctx, "streaming", False) and resp.status_code == 200:
            return  # written when the stream ends (api.streaming)
        status = resp.status_code
        after_response(req, lambda: log_access(req, status))


def log_access(req, status: int) -> None:
    """The one access record of a request, and its request metrics."""
    ctx = req.context
    seconds = time.perf_counter() - ctx.started
    fields = {
        "request_id": ctx.request_id,
        "method": req.method,
        "path": logged_path(req),
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "client": req.remote_addr,  # the client's address, X-Forwarded-For resolved (api.web_worker)
        **ctx.log,
    }
    usage = fields.pop("usage", None)
    if usage:
        fields["prompt_tokens"], fields["completion_tokens"] = token_counts(usage)
    code = getattr(ctx, "error_code", None)
    if code:
        fields["error_code"] = code
        if code in AUTH_FAILURE_CODES:
            metrics.AUTH_FAILURES.labels(code).inc()
    identity = getattr(ctx, "identity", None)
    if identity is not None:
        fields.update(identity.log_fields())
    log.info("request", extra=fields)
    endpoint = getattr(ctx, "endpoint", None)
    if endpoint:
        model = ctx.log.get("destination") or "-"
        metrics.REQUESTS.labels(endpoint, model, ctx.log.get("route") or "-", str(status)).inc()
        metrics.REQUEST_SECONDS.labels(endpoint, model).observe(seconds)



class IdentityMiddleware:
    """Establishes who is calling before any resource that needs it runs (after
    ``RequestContext`` has noted the resource's wire format: even a 401 comes in the
    endpoint's own error format)."""

    def __init__(self, authenticator: Authenticator):
        self.authenticator = authenticator

    def process_resource(self, req, resp, resource, params) -> None:
        if resource is None:
            return
        if getattr(resource, "authenticate", True):
            req.context.identity = self.authenticator.identify(req)
