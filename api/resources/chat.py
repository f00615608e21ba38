"""``POST /v1/chat/completions`` (OpenAI Chat Completions)."""

from __future__ import annotations

import falcon

from api.disconnect import client_gone_probe
from api.dispatch import Dispatcher
from api.routing import Router
from api.validation import validate_chat
from shared.jobs import CHAT_COMPLETIONS


class ChatCompletions:
    def __init__(self, router: Router, dispatcher: Dispatcher):
        self.router = router
        self.dispatcher = dispatcher

    def on_post(self, req, resp) -> None:
        body = validate_chat(req.get_media())
        identity = req.context.identity
        model, route = self.router.resolve(identity, body["model"])
        req.context.log.update({"model": body["model"], "destination": model.name, "route": route})
        reply = self.dispatcher.submit(model, endpoint=CHAT_COMPLETIONS, body=body,
                                       requested_model=body["model"],
                                       request_id=req.context.request_id, caller=identity.job_fields(),
                                       client_gone=client_gone_probe(req.env))
        req.context.log.update({k: reply.meta[k] for k in ("attempts", "queue_wait_ms", "upstream_seconds")
                                if k in reply.meta})
        if reply.error is not None:
            raise reply.error
        resp.status = reply.status
        resp.content_type = falcon.MEDIA_JSON
        resp.data = reply.body
