"""``GET /v1/models``: the model names this caller may use, in OpenAI's list format."""

from __future__ import annotations

from api.routing import Router
from shared.errors import ModelNotFound


def model_object(name: str, owner: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": owner}


class Models:
    def __init__(self, router: Router):
        self.router = router

    def on_get(self, req, resp) -> None:
        visible = self.router.visible_models(req.context.identity)
        resp.media = {"object": "list", "data": [model_object(name, model.type) for name, model in visible]}

    def on_get_one(self, req, resp, model_id: str) -> None:
        for name, model in self.router.visible_models(req.context.identity):
            if name == model_id:
                resp.media = model_object(name, model.type)
                return
        raise ModelNotFound(f"The model '{model_id}' does not exist on this gateway, or you may not use it.",
                            param="model")
