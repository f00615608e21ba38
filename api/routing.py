"""Which configured model serves a request, given who asks for what.

Routes are tried in file order; the first whose ``match`` holds wins, and its
``destination`` (default: the requested name) serves the request, so a route's
``model_name`` can be an alias. Without any ``routes`` key every authenticated
caller may use every model by its own name; with one, what no route allows is
refused. Decisions come in this order: an unknown model name (404), then no
route (403, saying who, which model and which project).
"""

from __future__ import annotations

from dataclasses import dataclass

from api.identity import Identity
from shared.config import GatewayConfig, ModelConfig, Route, RouteMatch
from shared.errors import ModelNotFound, NoRoute


@dataclass(frozen=True)
class Decision:
    model: ModelConfig  # the model that serves the request
    route: Route | None  # the route that admitted it (None: no routes configured)

    @property
    def route_name(self) -> str | None:
        return self.route.name if self.route else None


class Router:
    def __init__(self, config: GatewayConfig):
        self.config = config
        aliases = {name for route in config.routes for name in (route.match.model_name or ())}
        self.known_names = sorted({model.name for model in config.models} | aliases)

    def resolve(self, identity: Identity, requested: str) -> Decision:
        if requested not in self.known_names:
            raise ModelNotFound(f"The model '{requested}' does not exist on this gateway. "
                                "GET /v1/models lists the models you can use.", param="model")
        found = self._first_route(identity, requested)
        if found is None:
            raise NoRoute(self._refusal(identity, requested))
        return found

    def allowed(self, identity: Identity, requested: str) -> Decision | None:
        """The decision for ``identity`` asking for ``requested`` by name, or None when no route
        allows it: the check a fallback model passes (api.fallback), which refuses nothing itself."""
        return self._first_route(identity, requested)

    def visible_models(self, identity: Identity) -> list[tuple[str, ModelConfig]]:
        """(name the caller may ask for, model that would serve it), for /v1/models."""
        visible = []
        for name in self.known_names:
            found = self._first_route(identity, name)
            if found is not None:
                visible.append((name, found.model))
        return visible

    def _first_route(self, identity: Identity, requested: str) -> Decision | None:
        if not self.config.routes_configured:
            model = self.config.model(requested)
            return Decision(model, None) if model is not None else None
        for route in self.config.routes:
            if not matches(route.match, identity, requested):
                continue
            model = self.config.model(route.destination or requested)
            if model is not None:  # a route without destination cannot serve an alias
                return Decision(model, route)
        return None

    def _refusal(self, identity: Identity, requested: str) -> str:
        message = f"No route allows model '{requested}' for {identity.describe()}."
        if identity.project_id is None and any(_needs_project(route) for route in self.config.routes):
            message += " Some routes admit callers by GitLab project or group: send the X-Gitlab-Project-Id header."
        return message


def matches(match: RouteMatch, identity: Identity, requested: str) -> bool:
    if match.model_name is not None and requested not in match.model_name:
        return False
    if match.gitlab_user_id is not None and identity.user_id not in match.gitlab_user_id:
        return False
    if match.gitlab_project_id is not None:
        path = (identity.project_path or "").lower()
        if identity.project_id not in match.gitlab_project_id and path not in {p.lower() for p in
                                                                              match.gitlab_project_id}:
            return False
    if match.gitlab_group_id is not None and not set(identity.group_ids) & set(match.gitlab_group_id):
        return False
    return True


def _needs_project(route: Route) -> bool:
    return route.match.gitlab_project_id is not None or route.match.gitlab_group_id is not None
