"""The sandbox provider's plain endpoints: GET /v1/models and the /_sandbox/* ones tests read its state by
(calls, log, hangs, streams, reset; the outage control is in sandbox.provider_faults)."""

from __future__ import annotations

from urllib.parse import parse_qs

MODEL_ID = "sandbox-model"


def models(handler) -> None:
    if not handler._authorized("openai"):
        return handler._error("openai", 401, "invalid or missing sandbox api key", code="invalid_api_key")
    model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "sandbox"}
    return handler._send_json(200, {"object": "list", "data": [model]})


def calls(handler, query: str) -> None:
    key = parse_qs(query).get("key", [""])[0]
    with handler.server.lock:
        count = handler.server.counts.get(key, 0)
    handler._send_json(200, {"key": key, "count": count})


def log(handler, query: str) -> None:
    wanted = parse_qs(query)
    with handler.server.lock:
        entries = handler.server.log.snapshot(key=wanted.get("key", [None])[0], path=wanted.get("path", [None])[0])
    handler._send_json(200, {"requests": entries})


def snapshot(handler, name: str) -> None:
    """GET /_sandbox/hangs or /_sandbox/streams: a copy of each entry, taken under the lock."""
    with handler.server.lock:
        entries = [dict(entry) for entry in getattr(handler.server, name)]
    handler._send_json(200, entries)


def reset(handler) -> None:
    handler.server.reset()
    handler._send_json(200, {"ok": True})
