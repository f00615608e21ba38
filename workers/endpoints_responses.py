"""OpenAI's Responses API, for every model type (``workers.endpoints`` serves the other endpoints).

- A model whose server speaks it (``models[].native_responses_api``: ``openai``
  models by default, ``generic`` ones that say so) gets the request untouched but
  the model (``OpenAIProvider.responses_request``), and its stream is relayed as
  the provider sent it (``ResponsesRelay``). ``store`` and
  ``previous_response_id`` are the provider's; the gateway notes the owner of each
  response id it relays, so that only they may use it (``shared.responses_store``).
- Every other model gets it translated through the chat pivot
  (``workers.translate.responses_*``), answered as a Response object or its event
  stream, under the id ``resp_<job id>``. Unless ``store`` is false the gateway
  keeps the response and its conversation, which ``previous_response_id``
  continues. A failure once the stream has begun ends it with ``response.failed``,
  the one failure Codex reads.

Whether the caller owns a ``previous_response_id`` was checked by the API before
the job was queued; it is checked again here, where the conversation is read.
"""

from __future__ import annotations

import time

import orjson

from shared.errors import GatewayError, InvalidRequest, RequestCancelled, UpstreamModelNotFound
from shared.jobs import RESPONSES_DELETE, JobRequest
from shared.responses_store import RELAYED, STORED, ResponseRecord, ResponsesStore, not_found, owner_of
from shared.sse import RESPONSES, frame
from workers.endpoints import Emit, Outcome, first_meta
from workers.providers.base import Provider
from workers.providers.openai import ResponsesRelay
from workers.translate.responses_request import ChatRequest, input_items, responses_request_to_chat
from workers.translate.responses_response import chat_response_to_response
from workers.translate.responses_stream import ChatStreamToResponses, ResponsesOverChat
from workers.upstream import UpstreamClient, UpstreamRequest

# How refusals name the kind of model a request was translated for.
TARGETS = {"anthropic": "Anthropic models", "vertex": "Vertex AI Gemini models",
           "generic": "models without a Responses API", "openai": "models without a Responses API"}
FINAL_EVENTS = ("response.completed", "response.incomplete")


def serve(provider: Provider, client: UpstreamClient, request: JobRequest, emit: Emit | None,
          store: ResponsesStore) -> Outcome:
    """POST /v1/responses (whole, or streamed to ``emit``)."""
    owner = owner_of(request.caller)
    if provider.model.native_responses_api:
        return _relayed(provider, client, request, emit, store, owner)
    return _translated(provider, client, request, emit, store, owner)


def serve_stored(provider: Provider, client: UpstreamClient, request: JobRequest, store: ResponsesStore) -> Outcome:
    """GET or DELETE of a response the provider keeps (the API checked the caller owns it)."""
    response_id = request.body["response_id"]
    method = "DELETE" if request.endpoint == RESPONSES_DELETE else "GET"
    call = provider.stored_response_request(response_id, request_id=request.request_id, method=method)
    try:
        result = client.post_json(call, deadline=request.deadline)
    except UpstreamModelNotFound:  # the provider's 404: it no longer has that response
        raise not_found(response_id) from None
    data = result.data
    if method == "DELETE":
        store.forget(response_id)
    elif "model" in data:
        data = {**data, "model": request.requested_model}
    return Outcome(200, orjson.dumps(data), None, result.attempts, round(result.seconds, 4), result.retry_reasons)


# -- passed through ----------------------------------------------------------------------------------

def _relayed(provider: Provider, client: UpstreamClient, request: JobRequest, emit: Emit | None,
             store: ResponsesStore, owner: str) -> Outcome:
    body, name = request.body, request.requested_model
    record = ResponseRecord(owner, request.model, name, RELAYED, provider.deployment)
    keeps = body.get("store") is not False  # OpenAI keeps a response unless told not to

    def note(response_id: str) -> None:
        if keeps:  # before the client can learn the id, so a GET right after finds it
            store.note_relayed(response_id, record)

    call = provider.responses_request(body, request_id=request.request_id)
    if emit is None:
        result = client.post_json(call, deadline=request.deadline)
        data = {**result.data, "model": name}
        if isinstance(data.get("id"), str):
            note(data["id"])
        return Outcome(200, orjson.dumps(data), data.get("usage"), result.attempts, round(result.seconds, 4),
                       result.retry_reasons)
    relay = ResponsesRelay(name, on_created=note)
    stream = client.open_stream(call, deadline=request.deadline)
    for event, data in stream.events():
        for kind, payload in relay.feed(event, data):
            emit(frame(RESPONSES, payload, kind))
    relay.finish()
    return _streamed_outcome(stream, relay.usage)


# -- translated through the chat pivot -----------------------------------------------------------------

def _translated(provider: Provider, client: UpstreamClient, request: JobRequest, emit: Emit | None,
                store: ResponsesStore, owner: str) -> Outcome:
    body, name, model = request.body, request.requested_model, provider.model
    history: list[dict] = []
    previous = body.get("previous_response_id")
    if previous is not None:
        stored = store.load(previous, owner)
        if stored is None:  # expired since the API looked, or never the caller's
            raise not_found(previous, "previous_response_id")
        history = stored.items
    translated = responses_request_to_chat(body, upstream_model=model.model, drop=model.drop_params, history=history,
                                           parallel_tool_calls=model.type != "vertex",
                                           target=TARGETS.get(model.type, TARGETS["generic"]))
    response_id, created_at = f"resp_{request.job_id}", int(time.time())
    keeper = _Keeper(store, response_id, ResponseRecord(owner, request.model, name, STORED),
                     [*history, *input_items(body)]) if body.get("store") is not False else None
    call = _chat_call(provider, translated, request, stream=emit is not None)
    if emit is None:
        result = client.post_json(call, deadline=request.deadline)
        chat = provider.chat_response(result.data, requested_model=name)
        response = chat_response_to_response(chat, translated, response_id=response_id, created_at=created_at,
                                             requested_model=name, completed_at=int(time.time()))
        if keeper is not None:
            keeper.keep(response)
        return Outcome(200, orjson.dumps(response), response.get("usage"), result.attempts,
                       round(result.seconds, 4), result.retry_reasons, translated.dropped)
    meta = first_meta(translated.dropped)  # the Emitter sends it with the first chunk only
    events = ResponsesOverChat(provider.chat_stream(requested_model=name, include_usage=True),
                               ChatStreamToResponses(translated, response_id=response_id, created_at=created_at,
                                                     requested_model=name))

    def send(pairs: list[tuple[str, dict]]) -> None:
        for kind, data in pairs:
            if kind in FINAL_EVENTS and keeper is not None:
                keeper.keep(data["response"])  # kept before the client hears it is done
            emit(frame(RESPONSES, data, kind), meta)

    try:
        stream = client.open_stream(call, deadline=request.deadline)
        for event, data in stream.events():
            send(events.feed(event, data))
        send(events.finish())
    except RequestCancelled:
        raise  # nobody reads the stream any more
    except GatewayError as error:
        send(events.fail(error))  # once the stream has begun; before, the error is the HTTP answer
        raise
    return _streamed_outcome(stream, events.usage, translated.dropped)


def _chat_call(provider: Provider, translated: ChatRequest, request: JobRequest, *, stream: bool) -> UpstreamRequest:
    """The provider's call for the translated request; a refusal by the provider's own translation names
    the caller's fields, not the pivot's."""
    try:
        return provider.chat_request(translated.body, request_id=request.request_id, stream=stream)
    except InvalidRequest as error:
        raise translated.client_error(error) from None


class _Keeper:
    """Keeps a response the gateway produced, with the conversation it ends."""

    def __init__(self, store: ResponsesStore, response_id: str, record: ResponseRecord, conversation: list[dict]):
        self.store = store
        self.response_id = response_id
        self.record = record
        self.conversation = conversation

    def keep(self, response: dict) -> None:
        self.store.keep(self.response_id, self.record, response, [*self.conversation, *response.get("output", [])])


def _streamed_outcome(stream, usage: dict | None, dropped: list[str] | None = None) -> Outcome:
    return Outcome(usage=usage, attempts=stream.attempts, upstream_seconds=round(time.monotonic() - stream.started, 4),
                   retry_reasons=stream.retry_reasons, dropped=list(dropped or ()))
