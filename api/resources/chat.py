"""``POST /v1/chat/completions`` (OpenAI Chat Completions)."""

from __future__ import annotations

import falcon

from api.admission import Gate
from api.disconnect import client_gone_probe
from api.dispatch import Dispatcher
from api.validation import validate_chat
from shared.jobs import CHAT_COMPLETIONS


class ChatCompletions:
    def __init__(self, gate: Gate, dispatcher: Dispatcher):
        self.gate = gate
        self.dispatcher = dispatcher

    def on_post(self, req, resp) -> None:
        body = validate_chat(req.get_media())
        decision, reservation = self.gate.admit(req, body["model"], body)
        reply = self.dispatcher.submit(decision.model, endpoint=CHAT_COMPLETIONS, body=body,
                                       requested_model=body["model"], request_id=req.context.request_id,
                                       caller=req.context.identity.job_fields(), reservation=reservation,
                                       client_gone=client_gone_probe(req.env))
        req.context.log.update({k: reply.meta[k] for k in ("attempts", "queue_wait_ms", "upstream_seconds")
                                if k in reply.meta})
        if reply.error is not None:
            raise reply.error
        resp.status = reply.status
        resp.content_type = falcon.MEDIA_JSON
        resp.data = reply.body
