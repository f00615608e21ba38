"""The sandbox provider's error bodies, in the endpoint's wire format (OpenAI or Anthropic)."""

from __future__ import annotations

ANTHROPIC_ERRORS = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}
REASONS = {529: "Overloaded"}  # not in http.HTTPStatus, so http.server would send an empty phrase


def error_payload(api: str, status: int, message: str, code: str | None = None, param: str | None = None) -> dict:
    """The JSON body of an error answer from the `api` ("anthropic" or "openai") endpoint."""
    if api == "anthropic":
        kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = "rate_limit_error" if status == 429 else "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
