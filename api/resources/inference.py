"""The model endpoints: one resource class, configured per endpoint.

Each validates its body, is routed and checked for workers, enqueues a job
admitted by the rate limits and the queue's limit, and answers whole, or as a
stream once the worker's first chunk is in.
"""

from __future__ import annotations

from collections.abc import Callable

import falcon

from api.admission import Gate
from api.disconnect import client_gone_probe
from api.dispatch import Dispatcher
from api.streaming import respond_with_stream
from api.validation import validate_chat, validate_completions, validate_embeddings, validate_messages
from shared.jobs import CHAT_COMPLETIONS, COMPLETIONS, EMBEDDINGS, MESSAGES
from shared.replies import CHUNK


class Inference:
    def __init__(self, gate: Gate, dispatcher: Dispatcher, *, endpoint: str, validate: Callable[[object], dict],
                 wire: str = "openai", keepalive_interval: float = 15.0):
        self.gate = gate
        self.keepalive_interval = keepalive_interval
        self.dispatcher = dispatcher
        self.endpoint = endpoint
        self.validate = validate
        self.wire = wire  # read by the middleware: errors come in this format

    def on_post(self, req, resp) -> None:
        body = self.validate(req.get_media())
        stream = bool(body.get("stream"))
        decision, reservation = self.gate.prepare(req, body["model"], body)
        with self.gate.admitting(req, decision, reservation):
            job = self.dispatcher.enqueue(decision.model, endpoint=self.endpoint, body=body,
                                          requested_model=body["model"], request_id=req.context.request_id,
                                          caller=req.context.identity.job_fields(), reservation=reservation,
                                          stream=stream, route=decision.route_name)
        reply = self.dispatcher.wait(decision.model, job, client_gone=client_gone_probe(req.env))
        started_at = reply.meta.get("queue_wait_ms")
        req.context.log.update({k: reply.meta[k] for k in ("attempts", "upstream_seconds") if k in reply.meta})
        if started_at is not None:
            req.context.log["queue_wait_ms"] = started_at
        if reply.error is not None:
            raise reply.error
        if reply.kind == CHUNK:
            respond_with_stream(req, resp, self.dispatcher, reply, decision.model,
                                keepalive_interval=self.keepalive_interval)
            return
        if reply.meta.get("usage"):
            req.context.log["usage"] = reply.meta["usage"]
        resp.status = reply.status
        resp.content_type = falcon.MEDIA_JSON
        resp.data = reply.body


def endpoints(gate: Gate, dispatcher: Dispatcher, *, keepalive_interval: float = 15.0) -> dict[str, Inference]:
    def inference(endpoint: str, validate: Callable[[object], dict], wire: str = "openai") -> Inference:
        return Inference(gate, dispatcher, endpoint=endpoint, validate=validate, wire=wire,
                         keepalive_interval=keepalive_interval)

    return {
        "/v1/chat/completions": inference(CHAT_COMPLETIONS, validate_chat),
        "/v1/messages": inference(MESSAGES, validate_messages, wire="anthropic"),
        "/v1/embeddings": inference(EMBEDDINGS, validate_embeddings),
        "/v1/completions": inference(COMPLETIONS, validate_completions),
    }
