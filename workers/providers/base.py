"""The interface every provider adapter implements: a strategy per provider type.

An adapter turns a request into the provider's HTTP call and the provider's
answer back, in the gateway's pivot format, OpenAI Chat Completions (requests,
responses and ``chat.completion.chunk`` stream chunks). Anthropic-format clients
are translated to and from that pivot by ``workers.endpoints``, unless the
provider speaks Anthropic's Messages API itself (``native_messages``). An
adapter holds no sockets and does no retries: ``workers.upstream`` calls every
provider alike. A new provider is one new module that subclasses ``Provider``
and registers; what it does not offer answers 400 naming the model.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from shared.config import ModelConfig
from shared.config_types import DEFAULT_DEPLOYMENT
from shared.errors import InvalidRequest
from workers.upstream import UpstreamRequest

PROVIDERS: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    for type_name in cls.types:
        PROVIDERS[type_name] = cls
    return cls


class StreamTranslator(Protocol):
    """Turns a provider's stream events into chunks (or events) of another format."""

    usage: dict | None

    def feed(self, event: str | None, data: str) -> list: ...

    def finish(self) -> list: ...


class Provider:
    types: ClassVar[tuple[str, ...]] = ()
    native_messages: ClassVar[bool] = False  # speaks Anthropic's Messages API itself
    native_chat: ClassVar[bool] = False  # speaks the pivot, OpenAI chat, itself: nothing is translated or dropped
    deployment: str = DEFAULT_DEPLOYMENT  # which of the model's deployments (models[].deployments) it calls

    def __init__(self, model: ModelConfig):
        self.model = model  # as that deployment serves it (ModelConfig.for_deployment)

    def url(self, path: str) -> str:
        return f"{self.model.base_url}/{path.lstrip('/')}"

    def unsupported(self, what: str) -> InvalidRequest:
        return InvalidRequest(f"Model '{self.model.name}' ({self.model.type}) does not offer {what}.", param="model")

    # -- chat, in the pivot format -------------------------------------------
    def chat_request(self, body: dict, *, request_id: str, stream: bool = False) -> UpstreamRequest:
        raise self.unsupported("chat completions")

    def chat_response(self, data: dict, *, requested_model: str) -> dict:
        raise self.unsupported("chat completions")

    def chat_stream(self, *, requested_model: str, include_usage: bool) -> StreamTranslator:
        """Upstream stream events -> OpenAI chunk dicts (a usage-only chunk last, if asked)."""
        raise self.unsupported("streaming chat completions")

    # -- Anthropic's Messages API, where native ----------------------------------
    def messages_request(self, body: dict, *, request_id: str, stream: bool = False,
                         client_headers: dict | None = None) -> UpstreamRequest:
        """``client_headers``: the client's headers a passthrough forwards (anthropic-version, anthropic-beta)."""
        raise self.unsupported("the Messages API natively")

    def count_tokens_request(self, body: dict, *, request_id: str,
                             client_headers: dict | None = None) -> UpstreamRequest:
        """Anthropic's POST /v1/messages/count_tokens; its answer goes to the client as it is."""
        raise self.unsupported("token counting")

    def messages_response(self, data: dict, *, requested_model: str) -> dict:
        raise self.unsupported("the Messages API natively")

    def messages_stream(self, *, requested_model: str) -> StreamTranslator:
        """Upstream stream events -> (event name, data dict) pairs in Anthropic's format."""
        raise self.unsupported("the Messages API natively")

    # -- OpenAI's Responses API, where the server speaks it (models[].native_responses_api) ------
    def responses_request(self, body: dict, *, request_id: str) -> UpstreamRequest:
        raise self.unsupported("the Responses API natively")

    def stored_response_request(self, response_id: str, *, request_id: str, method: str) -> UpstreamRequest:
        """GET or DELETE of a response the provider keeps."""
        raise self.unsupported("the Responses API natively")

    # -- embeddings (OpenAI format) -----------------------------------------------
    def embeddings_request(self, body: dict, *, request_id: str) -> UpstreamRequest:
        raise self.unsupported("embeddings")

    def embeddings_response(self, data: dict, *, requested_model: str) -> dict:
        raise self.unsupported("embeddings")

    # -- OpenAI's legacy completions (fill-in-the-middle) --------------------------
    def completions_request(self, body: dict, *, request_id: str, stream: bool = False) -> UpstreamRequest:
        raise self.unsupported("legacy completions (/v1/completions)")

    def completions_response(self, data: dict, *, requested_model: str) -> dict:
        raise self.unsupported("legacy completions (/v1/completions)")

    def completions_stream(self, *, requested_model: str, include_usage: bool) -> StreamTranslator:
        raise self.unsupported("streaming legacy completions")
