"""The server side of the sandbox provider's Responses API: what it remembers between calls.

previous_response_id, storing a response (unless `store` is false; a stream only once complete) and
GET / DELETE /v1/responses/{id}. The Response objects and events themselves: sandbox.provider_responses.
"""

from __future__ import annotations

import hashlib

from sandbox.provider_logic import RequestError
from sandbox.provider_responses import Turn, deleted, not_found, previous_not_found


def continued(server, previous_id) -> list[dict]:
    """The conversation `previous_response_id` continues: the stored response's input and output items."""
    if previous_id is None:
        return []
    if not isinstance(previous_id, str):
        raise RequestError("Invalid type for 'previous_response_id': expected a string.",
                           param="previous_response_id", code="invalid_type")
    with server.lock:
        stored = server.responses.get(previous_id)
    if stored is None:
        raise previous_not_found(previous_id)
    return list(stored["context"])


def respond(handler, turn: Turn, body: dict, opts: dict, key: str, attempt: int) -> None:
    server = handler.server
    store = body.get("store") is not False  # OpenAI stores by default
    if body.get("stream") is True:
        # A stream that did not finish leaves nothing to continue from.
        if handler._run_stream(turn.events(), turn.failed_event, opts, key, attempt) == "completed" and store:
            with server.lock:
                server.responses.put(turn.ids["resp"], turn.stored())
        return None
    if store:
        with server.lock:
            server.responses.put(turn.ids["resp"], turn.stored())
    return handler._send_json(200, turn.response())


def stored_response(handler, method: str, response_id: str, query: str, raw: bytes) -> None:
    """GET or DELETE /v1/responses/{id}."""
    server = handler.server
    key = handler.headers.get("X-Request-Id") or hashlib.sha256(f"{method} {response_id}".encode()).hexdigest()
    server.record_call(f"/v1/responses/{response_id}", key, handler.headers, method=method, query=query, body=raw)
    if not handler._authorized("openai"):
        return handler._error("openai", 401, "invalid or missing sandbox api key", code="invalid_api_key")
    with server.lock:
        if method == "DELETE":
            found = server.responses.delete(response_id)
        else:
            stored = server.responses.get(response_id)
            found = stored is not None
    if not found:
        error = not_found(response_id)
        return handler._error("openai", error.status, str(error), code=error.code, param=error.param)
    return handler._send_json(200, deleted(response_id) if method == "DELETE" else stored["response"])
