"""Which configured model serves a request, given who asks for what.

Routes are parsed and validated with the config; enforcing them (GitLab
identity, aliases, deny by default) plugs in here.
"""

from __future__ import annotations

from api.identity import Identity
from shared.config import GatewayConfig, ModelConfig
from shared.errors import ModelNotFound


class Router:
    def __init__(self, config: GatewayConfig):
        self.config = config

    def resolve(self, identity: Identity, requested: str) -> tuple[ModelConfig, str | None]:
        """(the model that serves ``requested``, the name of the route that admitted it)."""
        model = self.config.model(requested)
        if model is None:
            raise ModelNotFound(f"The model '{requested}' does not exist on this gateway. "
                                "GET /v1/models lists the models you can use.", param="model")
        return model, None

    def visible_models(self, identity: Identity) -> list[ModelConfig]:
        return list(self.config.models)
