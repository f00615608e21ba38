"""The interface every provider adapter implements: a strategy per provider type.

An adapter knows how to turn a client's request into the provider's HTTP call and
the provider's answer back into the client's wire format. It holds no sockets and
does no retries: ``workers.upstream`` does the calling for every adapter alike.
Adding a provider is one new module that subclasses ``Provider`` and registers.
"""

from __future__ import annotations

from typing import ClassVar

from shared.config import ModelConfig
from workers.upstream import UpstreamRequest

PROVIDERS: dict[str, type[Provider]] = {}


def register(cls: type[Provider]) -> type[Provider]:
    for type_name in cls.types:
        PROVIDERS[type_name] = cls
    return cls


class Provider:
    types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: ModelConfig):
        self.model = model

    def chat_request(self, body: dict, *, request_id: str) -> UpstreamRequest:
        """An OpenAI Chat Completions request body -> the provider's HTTP call."""
        raise NotImplementedError

    def chat_response(self, data: dict, *, requested_model: str) -> dict:
        """The provider's answer -> an OpenAI ``chat.completion`` naming ``requested_model``."""
        raise NotImplementedError

    def url(self, path: str) -> str:
        return f"{self.model.base_url}/{path.lstrip('/')}"
