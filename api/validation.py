"""Checks on a client's request that need no model: malformed input is a 400
here, before anything is queued. What a given provider cannot express is the
provider adapter's business, in the worker."""

from __future__ import annotations

from shared.errors import InvalidRequest, UnsupportedParameter

CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def require_object(body) -> dict:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def requested_model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
    return model


def validate_chat(body) -> dict:
    body = require_object(body)
    requested_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required and must be a non-empty array.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{index}] must be an object.", param=f"messages[{index}]")
        role = message.get("role")
        if role not in CHAT_ROLES:
            raise InvalidRequest(f"messages[{index}].role must be one of {', '.join(sorted(CHAT_ROLES))}.",
                                 param=f"messages[{index}].role")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise InvalidRequest(f"messages[{index}].content must be a string or an array of parts.",
                                 param=f"messages[{index}].content")
    if body.get("stream"):
        raise UnsupportedParameter("Streaming ('stream': true) is not supported by this gateway yet; "
                                   "send the request without it.", param="stream")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    return body
