"""OpenAI's Responses API: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``.

``POST`` is an inference endpoint like the others (``api.resources.inference``);
the worker passes it through or translates it (``workers.endpoints_responses``).
A ``previous_response_id`` must name a response the caller owns
(``shared.responses_store``), checked before anything is queued; one of a
passed-through model continues only on that model, and one the gateway keeps
only on a model the gateway translates for (the provider never saw it). A
response one of the requested model's fallbacks produced (``api.fallback``)
continues on that fallback, as long as the routes let the caller use it by its
own name; so do ``GET`` and ``DELETE`` of it. Otherwise the refusal says which
model holds it when the caller may know it, and nothing of it when not.

``GET`` and ``DELETE`` answer a response the gateway keeps from Redis, with no
job; one the provider keeps is asked of the provider, through a job on its
model's queue that takes no rate-limit allowance. An id the caller does not
own, unknown or expired, is 404, one answer for all.

OpenAI's other Responses paths need state the gateway does not keep (``input_items``,
``cancel`` of a background response) or a count it cannot make for every model
(``input_tokens``): 404 naming them, in OpenAI's format.
"""

from __future__ import annotations

import re

import falcon
import orjson

from api import fallback
from api.admission import Admission, Admitted
from api.answers import Answers
from api.forwarded_headers import client_headers
from api.identity import Identity
from api.resources.inference import Inference, respond
from api.routing import Decision
from api.validation import validate_responses
from shared.errors import InvalidRequest, NotFound
from shared.jobs import RESPONSES, RESPONSES_DELETE, RESPONSES_RETRIEVE
from shared.responses_store import RELAYED, STORED, ResponseRecord, ResponsesStore, not_found, owner_of
from shared.sse import RESPONSES as RESPONSES_WIRE

# OpenAI's ids are resp_ and hex; the gateway's resp_ and a job id. Anything else names nothing here.
RESPONSE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class CreateResponse(Inference):
    """``POST /v1/responses``."""

    def __init__(self, admission: Admission, answers: Answers, store: ResponsesStore, *,
                 keepalive_interval: float = 15.0):
        super().__init__(admission, answers, endpoint=RESPONSES, validate=validate_responses, wire=RESPONSES_WIRE,
                         keepalive_interval=keepalive_interval)
        self.store = store

    def admit(self, req, body: dict, *, may_fall_back: bool = True) -> Admitted:
        previous = body.get("previous_response_id")
        if previous is None:
            return super().admit(req, body, may_fall_back=may_fall_back)
        holder = self._check_previous(req, body["model"], previous)
        # A continuation stays on the model (and provider) that holds the conversation: no fallback.
        return self.admission.admit(req, endpoint=self.endpoint, body=body,
                                    client_headers=client_headers(req, self.forwarded), serve_with=holder)

    def _check_previous(self, req, requested: str, previous: str) -> Decision | None:
        """Refuse a ``previous_response_id`` the request cannot continue; answer the routes' decision for
        the model that holds it when that is not the one ``requested`` resolves to (a fallback's)."""
        identity = req.context.identity
        owner = owner_of(identity.job_fields())
        record = self.store.record(previous, owner) if RESPONSE_ID.fullmatch(previous) else None
        if record is None:
            raise not_found(previous, "previous_response_id")
        model = self.admission.router.resolve(identity, requested).model  # the refusals admission would give
        if record.kind == RELAYED:
            if record.model == model.name:
                return None
            if record.requested != requested:
                raise InvalidRequest(f"'previous_response_id' names a response of model '{record.requested}', "
                                     "whose provider keeps it: continue it with that model.",
                                     param="previous_response_id")
            holder = holding_model(self.admission, identity, record.requested, record.model)
            if holder is not None:
                req.context.log["continued_on"] = holder.model.name
                return holder
            # Another model answered this name (a fallback, or before the routes changed) and the caller may
            # not use it now: nothing of it is named.
            raise InvalidRequest(f"'previous_response_id' names a response that model '{requested}' cannot "
                                 "continue: another model answered it, whose provider keeps it, and it does not "
                                 "serve you now. Send the conversation as input instead.",
                                 param="previous_response_id")
        if not model.native_responses_api:
            return None
        # A response the gateway keeps, asked of a model whose server keeps its own: the fallback that
        # produced it (which the gateway translates for) may continue it.
        holder = holding_model(self.admission, identity, record.requested, record.model) \
            if record.requested == requested else None
        if holder is not None and holder.model.name != model.name and not holder.model.native_responses_api:
            req.context.log["continued_on"] = holder.model.name
            return holder
        raise InvalidRequest(f"'previous_response_id' names a response the gateway keeps, which model "
                             f"'{requested}' cannot continue (its provider keeps its own responses): send the "
                             "conversation as input instead.", param="previous_response_id")


def holding_model(admission: Admission, identity: Identity, requested: str, holder: str) -> Decision | None:
    """The routes' decision for ``holder``, the model that produced a response asked for as ``requested``,
    when a request for ``requested`` by ``identity`` may be served there now: it is the model the name
    resolves to, or one of that model's fallbacks (``api.fallback.reachable``) the routes let the
    caller use by its own name. None otherwise (raises the routes' refusal of ``requested``)."""
    decision = admission.router.resolve(identity, requested)
    if decision.model.name == holder:
        return decision
    if holder not in fallback.reachable(admission.config, decision.model):
        return None
    allowed = admission.router.allowed(identity, holder)
    return allowed if allowed is not None and allowed.model.name == holder else None


class StoredResponse:
    """``GET`` and ``DELETE /v1/responses/{response_id}``."""

    endpoint = RESPONSES  # labels the request metrics
    wire = RESPONSES_WIRE

    def __init__(self, admission: Admission, answers: Answers, store: ResponsesStore, *,
                 keepalive_interval: float = 15.0):
        self.admission = admission
        self.answers = answers
        self.store = store
        self.keepalive_interval = keepalive_interval

    def on_get(self, req, resp, response_id: str) -> None:
        record, owner = self._owned(req, response_id)
        if record.kind == STORED:
            stored = self.store.load(response_id, owner)
            if stored is None:  # expired since
                raise not_found(response_id)
            self._answer(resp, stored.response)
            return
        self._ask_provider(req, resp, record, response_id, RESPONSES_RETRIEVE)

    def on_delete(self, req, resp, response_id: str) -> None:
        record, _ = self._owned(req, response_id)
        if record.kind == STORED:
            self.store.forget(response_id)
            # OpenAI's answer (developers.openai.com/api/reference/resources/responses/methods/delete).
            self._answer(resp, {"id": response_id, "object": "response", "deleted": True})
            return
        self._ask_provider(req, resp, record, response_id, RESPONSES_DELETE)

    def _owned(self, req, response_id: str) -> tuple[ResponseRecord, str]:
        owner = owner_of(req.context.identity.job_fields())
        record = self.store.record(response_id, owner) if RESPONSE_ID.fullmatch(response_id) else None
        if record is None:
            raise not_found(response_id)
        req.context.log.update({"model": record.requested, "destination": record.model})
        return record, owner

    def _ask_provider(self, req, resp, record: ResponseRecord, response_id: str, endpoint: str) -> None:
        """Through the queue of the model that holds it, as the caller may use it now: the name's model or
        one of its fallbacks (``holding_model``); when neither is, the response is not found."""
        holder = holding_model(self.admission, req.context.identity, record.requested, record.model)
        if holder is None:
            raise not_found(response_id)
        admitted = self.admission.admit(req, endpoint=endpoint, body={"model": record.requested,
                                                                      "response_id": response_id},
                                        rate_limited=False, serve_with=holder)
        respond(req, resp, self.answers, admitted, keepalive_interval=self.keepalive_interval)

    @staticmethod
    def _answer(resp, body: dict) -> None:
        resp.status = 200
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps(body)


class NotServed:
    """One of OpenAI's Responses paths the gateway does not serve: 404 saying why (after the
    credential, as every /v1/ path)."""

    wire = RESPONSES_WIRE

    def __init__(self, method: str, path: str, why: str):
        self.path = path
        self.why = why
        setattr(self, f"on_{method.lower()}", self.refuse)  # OpenAI's method for the path; others 405

    def refuse(self, req, resp, **params) -> None:
        raise NotFound(f"The gateway does not serve {req.method} {self.path}: {self.why}.")


def routes(admission: Admission, answers: Answers, store: ResponsesStore, *,
           keepalive_interval: float = 15.0) -> dict[str, object]:
    stored = StoredResponse(admission, answers, store, keepalive_interval=keepalive_interval)
    return {
        "/v1/responses": CreateResponse(admission, answers, store, keepalive_interval=keepalive_interval),
        "/v1/responses/{response_id}": stored,
        "/v1/responses/input_tokens": NotServed("POST", "/v1/responses/input_tokens",
                                                "it counts no input tokens for the Responses API"),
        "/v1/responses/{response_id}/input_items": NotServed("GET", "/v1/responses/{id}/input_items",
                                                             "it keeps no input items by response"),
        "/v1/responses/{response_id}/cancel": NotServed("POST", "/v1/responses/{id}/cancel",
                                                        "it runs no background responses"),
    }
