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
    _check_stream(body)
    _positive_ints(body, "max_tokens", "max_completion_tokens", "n")
    return body


def validate_messages(body) -> dict:
    """Anthropic's Messages API."""
    body = require_object(body)
    requested_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: a non-empty array is required.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{index}.role: must be 'user' or 'assistant'.",
                                 param=f"messages.{index}.role")
        if not isinstance(message.get("content"), (str, list)):
            raise InvalidRequest(f"messages.{index}.content: a string or an array of blocks is required.",
                                 param=f"messages.{index}.content")
    if "max_tokens" not in body:
        raise InvalidRequest("max_tokens: field required.", param="max_tokens")
    _positive_ints(body, "max_tokens")
    _check_stream(body)
    return body


def validate_embeddings(body) -> dict:
    body = require_object(body)
    requested_model(body)
    value = body.get("input")
    if not value or not isinstance(value, (str, list)):
        raise InvalidRequest("'input' is required: a string, or an array of strings or token arrays.", param="input")
    if body.get("stream"):
        raise UnsupportedParameter("Embeddings do not stream.", param="stream")
    _positive_ints(body, "dimensions")
    return body


def validate_completions(body) -> dict:
    """OpenAI's legacy completions: ``prompt`` (and ``suffix`` for fill-in-the-middle)."""
    body = require_object(body)
    requested_model(body)
    prompt = body.get("prompt")
    if prompt is None or not isinstance(prompt, (str, list)):
        raise InvalidRequest("'prompt' is required: a string or an array.", param="prompt")
    if body.get("suffix") is not None and not isinstance(body["suffix"], str):
        raise InvalidRequest("'suffix' must be a string.", param="suffix")
    _check_stream(body)
    _positive_ints(body, "max_tokens", "n")
    return body


def _check_stream(body: dict) -> None:
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")


def _positive_ints(body: dict, *names: str) -> None:
    for name in names:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
