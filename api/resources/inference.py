"""The model endpoints: one resource class, configured per endpoint.

Each validates its body, has its job admitted and queued (``api.admission``:
routes, workers, the queue's limit, the rate limits), waits for the worker's
answer (``api.answers``) and answers whole, or as a stream once the worker's
first chunk is in, in the endpoint's wire format.
"""

from __future__ import annotations

from collections.abc import Callable

import falcon

from api import fallback
from api.admission import Admission, Admitted
from api.answers import Answers
from api.disconnect import client_gone_probe
from api.forwarded_headers import ANTHROPIC, client_headers
from api.streaming import respond_with_stream
from api.validation import validate_chat, validate_completions, validate_embeddings, validate_messages
from shared.jobs import CHAT_COMPLETIONS, COMPLETIONS, EMBEDDINGS, MESSAGES
from shared.replies import CHUNK, DROPPED_PARAMS, DROPPED_PARAMS_HEADER, SERVED_BY, SERVED_BY_HEADER


class Inference:
    def __init__(self, admission: Admission, answers: Answers, *, endpoint: str,
                 validate: Callable[[object], dict], wire: str = "openai", keepalive_interval: float = 15.0,
                 forwarded: tuple[str, ...] = ()):
        self.admission = admission
        self.answers = answers
        self.keepalive_interval = keepalive_interval
        self.endpoint = endpoint
        self.validate = validate
        self.wire = wire  # read by the middleware: errors come in this format
        self.forwarded = forwarded  # client headers the job carries (api.forwarded_headers)

    def on_post(self, req, resp) -> None:
        body = self.validate(req.get_media())
        respond(req, resp, self.answers, self.admit(req, body), keepalive_interval=self.keepalive_interval,
                admission=self.admission)

    def admit(self, req, body: dict, *, may_fall_back: bool = True) -> Admitted:
        """Queue the request's job (``api.admission``); an endpoint may check more first.
        ``may_fall_back``: the request may move to its model's fallbacks (``api.fallback``)."""
        return self.admission.admit(req, endpoint=self.endpoint, body=body,
                                    client_headers=client_headers(req, self.forwarded), may_fall_back=may_fall_back)


def respond(req, resp, answers: Answers, admitted: Admitted, *, keepalive_interval: float,
            admission: Admission | None = None) -> None:
    """Wait for an admitted job's answer and send it, whole or as a stream once its first chunk is in.
    A request that may fall back (``admitted.trail``, with the ``admission`` to re-admit it) moves to
    its fallbacks on an error reply (``api.fallback``)."""
    req.context.rate_headers = admitted.rate_headers  # on every response from here (the middleware)
    gone = client_gone_probe(req.env)
    reply = answers.wait(admitted.model, admitted.job, client_gone=gone)
    if reply.error is not None and admitted.trail is not None and admission is not None:
        admitted, reply = fallback.follow(req, admission, answers, admitted, reply, client_gone=gone)
        req.context.rate_headers = admitted.rate_headers
    # The worker's facts for the access record: when it took the job, its attempts.
    req.context.log.update({k: reply.meta[k] for k in ("queue_wait_ms", "attempts", "upstream_seconds")
                            if k in reply.meta})
    dropped = reply.meta.get(DROPPED_PARAMS)
    if dropped:  # what the model's drop_params removed in translation: said before the stream commits
        resp.set_header(DROPPED_PARAMS_HEADER, ", ".join(dropped))
        req.context.log[DROPPED_PARAMS] = dropped
    served_by = reply.meta.get(SERVED_BY)
    if served_by:  # the model and deployment that served it (models[].deployments)
        resp.set_header(SERVED_BY_HEADER, served_by)
        req.context.log[SERVED_BY] = served_by
    if reply.error is not None:
        raise reply.error
    if reply.kind == CHUNK:
        respond_with_stream(req, resp, answers, admitted.job.job_id, reply, admitted.model,
                            keepalive_interval=keepalive_interval)
        return
    if reply.meta.get("usage"):
        req.context.log["usage"] = reply.meta["usage"]
    resp.status = reply.status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = reply.body


def endpoints(admission: Admission, answers: Answers, *, keepalive_interval: float = 15.0) -> dict[str, Inference]:
    def inference(endpoint: str, validate: Callable[[object], dict], wire: str = "openai",
                  forwarded: tuple[str, ...] = ()) -> Inference:
        return Inference(admission, answers, endpoint=endpoint, validate=validate, wire=wire,
                         keepalive_interval=keepalive_interval, forwarded=forwarded)

    return {
        "/v1/chat/completions": inference(CHAT_COMPLETIONS, validate_chat),
        "/v1/messages": inference(MESSAGES, validate_messages, wire="anthropic", forwarded=ANTHROPIC),
        "/v1/embeddings": inference(EMBEDDINGS, validate_embeddings),
        "/v1/completions": inference(COMPLETIONS, validate_completions),
    }
