"""Checks on a client's request that need no model: what the gateway itself needs
of it (the model's name, the messages as a list, the counts its token reservation
reads, ``stream``), refused with 400 here, before anything is queued. The rest is
not the gateway's to judge: passed through to a provider speaking the client's
format, the provider judges it; translated, the translation in the worker refuses
what it cannot express (``workers.translate``). The body's size and nesting are
checked as it is read (``api.media``).

``openapi.yaml`` describes exactly these checks (the fuzzing test holds the two
together): a field it constrains is checked here, every other field is the
provider's to judge.
"""

from __future__ import annotations

from shared.errors import InvalidRequest, UnsupportedParameter

# Counts (max_tokens, n, dimensions) above this are no request's real need, and a token
# reservation must stay a number the rate limiter's arithmetic holds exactly.
MAX_COUNT = 2**31 - 1
ENCODING_FORMATS = ("float", "base64")
RESPONSES_REFUSED = ("background", "conversation", "prompt")


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
    """OpenAI's Chat Completions: the messages' roles and contents are the provider's (or the
    translation's) to judge."""
    body = require_object(body)
    requested_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required and must be a non-empty array.", param="messages")
    _check_stream(body)
    _positive_ints(body, "max_tokens", "max_completion_tokens")  # the token reservation reads them
    return body


def validate_messages(body) -> dict:
    """Anthropic's Messages API: the messages' roles and blocks, ``system``, ``thinking`` and every
    other field are the provider's (or the translation's) to judge."""
    body = require_object(body)
    requested_model(body)
    _anthropic_messages(body)
    if body.get("max_tokens") is None:
        raise InvalidRequest("max_tokens: field required.", param="max_tokens")
    _positive_ints(body, "max_tokens")
    _check_stream(body)
    return body


def validate_count_tokens(body) -> dict:
    """Anthropic's ``/v1/messages/count_tokens``: a Messages request without ``max_tokens``."""
    body = require_object(body)
    requested_model(body)
    _anthropic_messages(body)
    if body.get("stream") is not None and body["stream"] is not False:
        raise InvalidRequest("stream: token counting does not stream.", param="stream")
    return body


def _anthropic_messages(body: dict) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: a non-empty array is required.", param="messages")


def validate_embeddings(body) -> dict:
    body = require_object(body)
    requested_model(body)
    value = body.get("input")
    if value == "" or not _is_prompt(value):
        raise InvalidRequest("'input' is required: a non-empty string, or a non-empty array of strings, of token "
                             "ids, or of token-id arrays.", param="input")
    stream = body.get("stream")
    if stream is True:
        raise UnsupportedParameter("Embeddings do not stream.", param="stream")
    if stream is not None and stream is not False:
        raise InvalidRequest("'stream' must be false (embeddings do not stream).", param="stream")
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODING_FORMATS:
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    _positive_ints(body, "dimensions")
    return body


def validate_completions(body) -> dict:
    """OpenAI's legacy completions: ``prompt`` (and ``suffix`` for fill-in-the-middle)."""
    body = require_object(body)
    requested_model(body)
    if not _is_prompt(body.get("prompt")):
        raise InvalidRequest("'prompt' is required: a string, or a non-empty array of strings, of token ids, or "
                             "of token-id arrays.", param="prompt")
    if body.get("suffix") is not None and not isinstance(body["suffix"], str):
        raise InvalidRequest("'suffix' must be a string.", param="suffix")
    _check_stream(body)
    _positive_ints(body, "max_tokens", "n")
    return body


def validate_responses(body) -> dict:
    """OpenAI's Responses API. What the gateway keeps no state for, background responses, conversations
    and prompt templates, is refused for every model: a passed-through one would keep it at the provider
    under the gateway's own key, where no GitLab user's is told from another's."""
    body = require_object(body)
    requested_model(body)
    for name in RESPONSES_REFUSED:
        if body.get(name) is not None and not (name == "background" and body[name] is False):
            raise UnsupportedParameter(f"'{name}' is not supported: the gateway keeps no background responses, "
                                       "conversations or prompt templates.", param=name)
    value = body.get("input")
    if value is not None and not isinstance(value, (str, list)):
        raise InvalidRequest("'input' must be a string or an array of input items.", param="input")
    previous = body.get("previous_response_id")
    if previous is not None and not (isinstance(previous, str) and previous):
        raise InvalidRequest("'previous_response_id' must be a non-empty string.", param="previous_response_id")
    if body.get("store") is not None and not isinstance(body["store"], bool):
        raise InvalidRequest("'store' must be true or false.", param="store")
    _check_stream(body)
    _positive_ints(body, "max_output_tokens")
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
        if value is not None and not (_is_int(value) and 1 <= value <= MAX_COUNT):
            raise InvalidRequest(f"'{name}' must be a positive integer (at most {MAX_COUNT}).", param=name)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_token_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(_is_int(token) and 0 <= token <= MAX_COUNT
                                                           for token in value)


def _is_prompt(value) -> bool:
    """OpenAI's text input (``prompt``, ``input``): a string, or a non-empty array of strings,
    of token ids, or of token-id arrays; one kind per array, as OpenAI's own schema has it."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    return (all(isinstance(item, str) for item in value) or _is_token_array(value)
            or all(_is_token_array(item) for item in value))
