"""Answers the web worker writes itself, before or instead of the app: a client over
its connection cap, a request that took too long to arrive, a chunked body over the
limit, and gunicorn's own refusals of malformed requests (``api.gunicorn_patches``).

They come in the endpoint's error format when the request's target is known
(Anthropic's for ``/v1/messages``, and for ``/v1/models`` asked with
``anthropic-version``; GitLab's AI gateway's for GitLab Duo's paths), OpenAI's
otherwise, and always close the connection.
"""

from __future__ import annotations

import http
import re
import threading
import uuid

import orjson

from shared.errors import GatewayError, InvalidRequest, PayloadTooLarge, error_body

# As the app's request ids (api.middleware): echoed only when short and inert.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
# GitLab Duo's paths (api.duo.routes; a unit test holds the two together): GitLab reads their errors
# only in its AI gateway's shapes.
_DUO_PATH = re.compile(r"^/(monitoring/|v[234]/|v1/(prompts|code|search)/)")


class RequestTimeout(GatewayError):
    status = 408
    code = "request_timeout"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_message = "The request did not arrive in time."


class TooManyConnections(GatewayError):
    status = 429
    code = "too_many_connections"
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    default_message = "Too many connections from your address."


class TooMuchInFlight(GatewayError):
    status = 429
    code = "too_much_in_flight"
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    default_message = ("Your address has too many large request bodies in flight at once; "
                       "send this one when one of them has been answered.")


class RequestRefused(InvalidRequest):
    """gunicorn's refusal of a request it could not parse, at gunicorn's status."""


# gunicorn's statuses (gunicorn.workers.base.Worker.handle_error) and the code each gets.
_REFUSAL_CODES = {
    400: "invalid_request",
    403: "forbidden",
    413: "payload_too_large",
    414: "request_line_too_long",
    417: "expectation_failed",
    431: "header_fields_too_large",
    501: "unsupported_transfer_coding",
}


def wire_for(path: str, anthropic_version: bool) -> str:
    """The error format of the endpoint at ``path`` (as the app's resources choose it)."""
    path = path.rstrip("/")
    if _DUO_PATH.match(path):
        return "duo"
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if anthropic_version and (path == "/v1/models" or path.startswith("/v1/models/")):
        return "anthropic"
    return "openai"


_serving = threading.local()  # the head of the request a request thread is serving


def serving(head) -> None:
    """This thread now serves the request with ``head`` (``api.request_framing.Head``, or None):
    a refusal gunicorn writes meanwhile comes in its endpoint's format, with its request id."""
    _serving.head = head


def refusal_format() -> tuple[str, str | None]:
    """The error format and the caller's request id for a refusal of this thread's request."""
    head = getattr(_serving, "head", None)
    if head is None:
        return "openai", None
    return wire_for(head.path, head.anthropic_version), head.request_id


def request_id(sent: str | None) -> str:
    return sent if sent and _SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex


def response(error: GatewayError, *, wire: str = "openai", request_id_sent: str | None = None) -> bytes:
    """The whole HTTP/1.1 response for ``error``, ``Connection: close``."""
    body = orjson.dumps(error_body(error, wire))
    status = http.HTTPStatus(error.status)
    lines = [f"HTTP/1.1 {status.value} {status.phrase}",
             "Content-Type: application/json",
             f"Content-Length: {len(body)}",
             "Connection: close",
             f"X-Request-Id: {request_id(request_id_sent)}"]
    lines += [f"{name}: {value}" for name, value in error.response_headers().items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def too_large(limit: int) -> PayloadTooLarge:
    # The same words as the app's own 413 (api.media.too_large).
    return PayloadTooLarge(f"The request body exceeds the gateway's limit of {limit} bytes.")


def gunicorn_refusal(status: int, reason: str, message: str) -> GatewayError:
    """gunicorn's error answer as one of ours: its status, and its message (which names
    what was malformed) except for a 500, whose details stay in the log."""
    if status >= 500 and status != 501:
        return GatewayError()
    error = RequestRefused(message or reason, status=status)
    error.code = _REFUSAL_CODES.get(status, "invalid_request")
    return error
