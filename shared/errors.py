"""The gateway's error hierarchy, documented in one place.

Every failure a client can see is a ``GatewayError`` subclass. Each class fixes
the HTTP status, a stable machine-readable ``code`` (callers branch on it), and
the error ``type`` used by the OpenAI and Anthropic wire formats. ``error_body``
shapes one as the endpoint's format carries it, the same in an error response and
in the event that ends a failed stream; workers send errors back through Redis as
plain dicts (``to_dict`` / ``from_dict``), so nothing is pickled.

The classes only the API raises live where they are raised (their module in brackets below);
``from_dict`` knows only the classes of this module, which are all a worker can send.

    GatewayError (500 internal_error)
    ├── InvalidRequest (400 invalid_request)
    │   ├── InvalidJSON (400 invalid_json)
    │   ├── UnsupportedParameter (400 unsupported_parameter)
    │   └── RequestRefused (gunicorn's refusal of a malformed request, at its status) [api.edge_responses]
    ├── Unauthorized (401 missing_credentials, invalid_credentials)
    │   └── DuoUnauthorized (401 invalid_instance_token: GitLab Duo's call, no valid instance JWT) [api.errors]
    ├── Forbidden (403 user_blocked, insufficient_access, project_mismatch, project_not_found, no_route,
    │   │          admin_only)
    │   └── DuoForbidden (403 missing_unit_primitive: the JWT's scopes lack the Duo feature's) [api.errors]
    ├── ModelNotFound (404 model_not_found)
    ├── NotFound (404 not_found)
    ├── MethodNotAllowed (405 method_not_allowed)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── RateLimited (429 rate_limited: the gateway's own limits; never enqueued)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── RequestTimeout (408 request_timeout: the request did not arrive in time) [api.edge_responses]
    ├── TooManyConnections, TooMuchInFlight (429 too_many_connections, too_much_in_flight: one client
    │   address's connections or large bodies in flight) [api.edge_responses]
    ├── DuoInvalid (422 invalid_duo_request: FastAPI's validation list, GitLab shows its msg) [api.duo.models]
    │   └── DuoModelUnmapped (422 duo_model_unmapped: the Duo request maps to no configured model)
    ├── DuoModelServerError (421 duo_model_server_error: a model failed a whole answer) [api.duo.model_errors]
    ├── ServiceUnavailable (503 service_unavailable)
    │   ├── QueueFull (503 queue_full)
    │   ├── NoWorkers (503 no_workers)
    │   ├── DeploymentsUnavailable (503 deployments_unavailable: every deployment out or failing)
    │   └── GitLabUnavailable (503 gitlab_unavailable: not a bad token, GitLab cannot say)
    ├── DeadlineExceeded (504 deadline_exceeded)
    ├── WorkerLost (502 worker_lost: the worker died or was stopped mid-request)
    ├── RequestCancelled (499 client_closed_request: the client went away; nobody reads it)
    └── UpstreamFailure: the provider's answer, after the gateway's own retries
        ├── UpstreamError (502 upstream_error)
        ├── UpstreamAuthError (502 upstream_auth_error: the gateway's key was refused)
        ├── UpstreamModelNotFound (502 upstream_model_not_found: the configured model id is wrong)
        ├── UpstreamRateLimited (429 upstream_rate_limited)
        └── UpstreamRejected (400/413/422 passed through: upstream_invalid_request)
            └── ContextLengthExceeded (400 context_length_exceeded: the prompt is too long for it)

Errors that the gateway has already retried are marked ``should_retry=False``;
the API then sends ``x-should-retry: false`` so SDKs do not multiply attempts.
"""

from __future__ import annotations

import math
from typing import Any


class GatewayError(Exception):
    status: int = 500
    code: str = "internal_error"
    openai_type: str = "api_error"
    anthropic_type: str = "api_error"
    default_message: str = "The gateway failed to handle the request."
    should_retry: bool | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        should_retry: bool | None = None,
    ):
        self.message = message or self.default_message
        super().__init__(self.message)
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self.param = param
        self.headers = dict(headers or {})
        if should_retry is not None:
            self.should_retry = should_retry

    def response_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.retry_after is not None and math.isfinite(self.retry_after):
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        return headers

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "code": self.code,
            "openai_type": self.openai_type,
            "anthropic_type": self.anthropic_type,
            "message": self.message,
            "retry_after": self.retry_after,
            "param": self.param,
            "headers": self.headers,
            "should_retry": self.should_retry,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GatewayError:
        """Rebuild an error sent through Redis. Unknown codes keep their fields."""
        known = _BY_CODE.get(data.get("code", ""), GatewayError)
        err = known(
            data.get("message"),
            status=data.get("status"),
            retry_after=data.get("retry_after"),
            param=data.get("param"),
            headers=data.get("headers"),
            should_retry=data.get("should_retry"),
        )
        if known is GatewayError:
            err.code = data.get("code") or err.code
            err.openai_type = data.get("openai_type") or err.openai_type
            err.anthropic_type = data.get("anthropic_type") or err.anthropic_type
        return err


class InvalidRequest(GatewayError):
    status = 400
    code = "invalid_request"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_message = "The request is not valid."


class InvalidJSON(InvalidRequest):
    code = "invalid_json"
    default_message = "The request body is not valid JSON."


class UnsupportedParameter(InvalidRequest):
    code = "unsupported_parameter"
    default_message = "The request uses a parameter this model cannot honour."


class Unauthorized(GatewayError):
    status = 401
    code = "invalid_credentials"
    openai_type = "authentication_error"
    anthropic_type = "authentication_error"
    default_message = "The GitLab credential is missing, invalid, expired or revoked."


class MissingCredentials(Unauthorized):
    code = "missing_credentials"
    default_message = ("Send a GitLab token: 'Authorization: Bearer <token>', 'PRIVATE-TOKEN', "
                       "'x-api-key', or a CI job token in 'JOB-TOKEN'.")


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"
    openai_type = "permission_error"
    anthropic_type = "permission_error"
    default_message = "You may not do this."


class UserBlocked(Forbidden):
    code = "user_blocked"
    default_message = "Your GitLab account is not active."


class InsufficientAccess(Forbidden):
    code = "insufficient_access"


class ProjectMismatch(Forbidden):
    code = "project_mismatch"


class ProjectNotFound(Forbidden):
    code = "project_not_found"


class NoRoute(Forbidden):
    code = "no_route"


class AdminOnly(Forbidden):
    code = "admin_only"
    default_message = "Only GitLab administrators may use this endpoint."


class ModelNotFound(GatewayError):
    status = 404
    code = "model_not_found"
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    default_message = "The model does not exist."


class NotFound(GatewayError):
    status = 404
    code = "not_found"
    openai_type = "invalid_request_error"
    anthropic_type = "not_found_error"
    default_message = "No such endpoint."


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_message = "This endpoint does not accept that method."


class PayloadTooLarge(GatewayError):
    status = 413
    code = "payload_too_large"
    openai_type = "invalid_request_error"
    anthropic_type = "request_too_large"
    default_message = "The request body is too large."


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    default_message = "Rate limit exceeded."


class UnsupportedMediaType(GatewayError):
    status = 415
    code = "unsupported_media_type"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_message = "Send the request body as application/json."


class ServiceUnavailable(GatewayError):
    status = 503
    code = "service_unavailable"
    openai_type = "api_error"
    anthropic_type = "overloaded_error"
    default_message = "The gateway cannot serve requests right now."


class QueueFull(ServiceUnavailable):
    code = "queue_full"
    default_message = "The model's queue is full."


class NoWorkers(ServiceUnavailable):
    code = "no_workers"
    default_message = "No worker is serving this model."


class DeploymentsUnavailable(ServiceUnavailable):
    """The worker found no deployment of the model healthy (each failed or cooling down), or every
    healthy one failed within the deadline, before anything reached the client. The API may re-route
    it to the model's ``fallbacks``."""

    code = "deployments_unavailable"
    default_message = "Every deployment of the model is unavailable right now."
    should_retry = False


class GitLabUnavailable(ServiceUnavailable):
    code = "gitlab_unavailable"
    default_message = ("GitLab cannot verify your credential right now (it is unreachable or overloaded); "
                       "try again shortly.")


class DeadlineExceeded(GatewayError):
    status = 504
    code = "deadline_exceeded"
    openai_type = "api_error"
    anthropic_type = "api_error"
    default_message = "The request did not complete within the model's timeout."


class WorkerLost(GatewayError):
    status = 502
    code = "worker_lost"
    openai_type = "api_error"
    anthropic_type = "api_error"
    default_message = ("The worker handling this request stopped before it answered; "
                       "the request may be retried.")


class RequestCancelled(GatewayError):
    status = 499
    code = "client_closed_request"
    openai_type = "api_error"
    anthropic_type = "api_error"
    default_message = "The client closed the request before the answer was ready."


class UpstreamFailure(GatewayError):
    """The provider failed the call; the gateway already retried what it could."""

    status = 502
    code = "upstream_error"
    should_retry = False


class UpstreamError(UpstreamFailure):
    default_message = "The model provider failed to answer."


class UpstreamAuthError(UpstreamFailure):
    code = "upstream_auth_error"
    default_message = "The model provider refused the gateway's API key."


class UpstreamModelNotFound(UpstreamFailure):
    code = "upstream_model_not_found"
    default_message = "The model provider does not know the configured model id."


class UpstreamRateLimited(UpstreamFailure):
    status = 429
    code = "upstream_rate_limited"
    openai_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    default_message = "The model provider is rate limiting the gateway."


class UpstreamRejected(UpstreamFailure):
    """A 400/413/422 caused by the request itself: passed on with the provider's status."""

    status = 400
    code = "upstream_invalid_request"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_message = "The model provider rejected the request."


class ContextLengthExceeded(UpstreamRejected):
    """The provider said the request exceeds the model's context window; the API may re-route it to
    the model's ``context_window_fallback``."""

    code = "context_length_exceeded"
    default_message = "The request exceeds the model's context window."


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


_BY_CODE: dict[str, type[GatewayError]] = {
    sub.code: sub for sub in _all_subclasses(GatewayError)
}
_BY_CODE["internal_error"] = GatewayError


def error_body(error: GatewayError, wire: str) -> dict:
    """``error`` in the endpoint's wire format: Anthropic's ``{"type": "error", "error": {"type",
    "message"}}`` for ``wire`` "anthropic", GitLab's AI gateway's for "duo" (``duo_error_body``),
    OpenAI's ``{"error": {"message", "type", "param", "code"}}`` otherwise."""
    if wire == "duo":
        return duo_error_body(error)
    if wire == "anthropic":
        return {"type": "error", "error": {"type": error.anthropic_type, "message": error.message}}
    return {"error": {"message": error.message, "type": error.openai_type, "param": error.param,
                      "code": error.code}}


def duo_error_body(error: GatewayError) -> dict:
    """``error`` as GitLab's own AI gateway (a FastAPI app) answers, which GitLab and its IDEs read:
    a 401 from its authentication middleware is ``{"error": message}`` (``on_auth_error`` in
    ai_gateway/api/middleware/authentication.py); a 422 is FastAPI's validation list, whose
    ``detail[0].msg`` GitLab shows to the admin (ee/lib/gitlab/llm/ai_gateway/self_hosted_models/tasks/
    model_config_check.rb); every other status is an ``HTTPException``'s ``{"detail": message}`` (a 403
    for a missing unit primitive: "Unauthorized to access code completions", api/v2/code/completions.py)."""
    if error.status == 401:
        return {"error": error.message}
    if error.status == 422:
        where = ["body", error.param] if error.param else ["body"]
        return {"detail": [{"loc": where, "msg": error.message, "type": error.code}]}
    return {"detail": error.message}
