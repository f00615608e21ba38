"""``GET /v1/models``: the model names this caller may use.

OpenAI's list shape by default; Anthropic's when the request carries
``anthropic-version`` (the Anthropic SDK always sends it), errors included.
"""

from __future__ import annotations

from api.routing import Router
from shared.errors import ModelNotFound

EPOCH = "1970-01-01T00:00:00Z"


def openai_object(name: str, owner: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


def anthropic_object(name: str) -> dict:
    return {"type": "model", "id": name, "display_name": name, "created_at": EPOCH}


class Models:
    endpoint = "models"  # the label in request metrics

    def __init__(self, router: Router):
        self.router = router

    @staticmethod
    def _anthropic(req) -> bool:
        return bool(req.get_header("anthropic-version"))

    def wire_for(self, req) -> str:
        """Read by the middleware: errors in the format of the SDK that asks."""
        return "anthropic" if self._anthropic(req) else "openai"

    def on_get(self, req, resp) -> None:
        visible = self.router.visible_models(req.context.identity)
        if self._anthropic(req):
            data = [anthropic_object(name) for name, _ in visible]
            resp.media = {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                          "last_id": data[-1]["id"] if data else None}
        else:
            resp.media = {"object": "list", "data": [openai_object(name, model.type) for name, model in visible]}

    def on_get_one(self, req, resp, model_id: str) -> None:
        for name, model in self.router.visible_models(req.context.identity):
            if name == model_id:
                resp.media = anthropic_object(name) if self._anthropic(req) else openai_object(name, model.type)
                return
        raise ModelNotFound(f"The model '{model_id}' does not exist on this gateway, or you may not use it.",
                            param="model")
