"""Every failure leaves the API in the endpoint's own wire format.

OpenAI endpoints answer ``{"error": {"message", "type", "param", "code"}}``;
Anthropic endpoints (``req.context.wire == "anthropic"``) answer
``{"type": "error", "error": {"type", "message"}}``; GitLab Duo's (``"duo"``) answer as
GitLab's own AI gateway does (``shared.errors.duo_error_body``). No traceback ever reaches a
client: unexpected exceptions are logged with the request id and answered 500.
"""

from __future__ import annotations

import logging

import falcon
import redis

from shared.errors import (
    Forbidden,
    GatewayError,
    InvalidJSON,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    error_body,
)

log = logging.getLogger("aigw.api")


class DuoUnauthorized(Unauthorized):
    """GitLab Duo's call without a valid instance JWT (api.duo_auth); its message is what GitLab's
    own AI gateway says ("Forbidden by auth provider", "Header mismatch 'X-Gitlab-Realm'"...)."""

    code = "invalid_instance_token"
    default_message = "Forbidden by auth provider"


class DuoForbidden(Forbidden):
    """A valid instance JWT whose scopes hold none of the unit primitives the Duo feature needs."""

    code = "missing_unit_primitive"


_FALCON_ERRORS: dict[int, type[GatewayError]] = {
    400: InvalidRequest,
    404: NotFound,
    405: MethodNotAllowed,
    415: UnsupportedMediaType,
}


def render(req: falcon.Request, resp: falcon.Response, error: GatewayError) -> None:
    resp.status = error.status
    for name, value in error.response_headers().items():
        resp.set_header(name, value)
    resp.media = error_body(error, getattr(req.context, "wire", "openai"))
    req.context.error_code = error.code


def handle_gateway_error(req, resp, error: GatewayError, params) -> None:
    render(req, resp, error)


def handle_http_error(req, resp, error: falcon.HTTPError, params) -> None:
    """Falcon's own errors (bad JSON, unknown route, wrong method) in our format."""
    if isinstance(error, falcon.MediaMalformedError):
        converted: GatewayError = InvalidJSON("The request body is not valid JSON.")
    elif isinstance(error, falcon.MediaNotFoundError):
        converted = InvalidRequest("The request body is empty; send a JSON object.")
    else:
        cls = _FALCON_ERRORS.get(error.status_code, GatewayError)
        message = error.description or error.title or None
        converted = cls(message, status=error.status_code)
        if isinstance(error, falcon.HTTPRouteNotFound):
            converted = NotFound(f"No endpoint at {req.method} {req.path}.")
        elif isinstance(error, falcon.HTTPMethodNotAllowed):
            converted = MethodNotAllowed(f"{req.path} does not accept {req.method}.")
            for name, value in (error.headers or {}).items():
                resp.set_header(name, value)
    render(req, resp, converted)


def handle_redis_error(req, resp, error: redis.RedisError, params) -> None:
    log.error("redis unavailable", extra={"request_id": getattr(req.context, "request_id", None),
                                          "error": str(error)})
    render(req, resp, ServiceUnavailable("The gateway cannot reach its Redis; try again shortly.",
                                         retry_after=1))


def handle_unexpected(req, resp, error: Exception, params) -> None:
    if isinstance(error, falcon.HTTPError):  # Falcon routes these here too when this is the closest match
        return handle_http_error(req, resp, error, params)
    log.exception("unhandled error", extra={"request_id": getattr(req.context, "request_id", None)})
    render(req, resp, GatewayError())


def install(app: falcon.App) -> None:
    # Falcon picks the most specific registered class, so order does not matter.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(redis.RedisError, handle_redis_error)
    app.add_error_handler(GatewayError, handle_gateway_error)
