"""``openapi.yaml`` and the routes the Falcon app serves hold each other true: every route and
method served is documented and every documented one is served, public exactly where no
credential is checked, errors in the format the resource answers in."""

from __future__ import annotations

from pathlib import Path

import falcon
import falcon.inspect
import pytest
import schemathesis
import yaml

from api.app import create_app
from shared.config import parse_config
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text())


@pytest.fixture(scope="module")
def app():
    """The app, and the resource ``create_app`` added at each path (seen through ``add_route``)."""
    resources = {}
    add_route = falcon.App.add_route

    def recording(self, uri_template, resource, **kwargs):
        resources[uri_template] = resource
        return add_route(self, uri_template, resource, **kwargs)

    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://127.0.0.1:9/v1"}]}, {})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(falcon.App, "add_route", recording)
        app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"), config).app
    return app, resources


def served(app) -> dict[tuple[str, str], object]:
    """(path, method) -> resource, for the responders the app's own code defines (Falcon adds
    405 and OPTIONS responders of its own to every route)."""
    app, resources = app
    found = {}
    for route in falcon.inspect.inspect_routes(app):
        for method in route.methods:
            if not method.internal:
                found[(route.path, method.method.lower())] = resources[route.path]
    return found


def documented(document: dict) -> dict[tuple[str, str], dict]:
    return {(path, method): operation for path, item in document["paths"].items()
            for method, operation in item.items() if method in METHODS}


def test_the_document_is_valid_openapi() -> None:
    schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
    schema.validate()  # OpenAPI 3.1's own schema
    assert schema.raw_schema["openapi"].startswith("3.1")


def test_every_route_served_is_documented_and_every_documented_one_served(app, document) -> None:
    assert set(served(app)) == set(documented(document))


def test_public_exactly_where_no_credential_is_checked(app, document) -> None:
    operations = documented(document)
    for key, resource in served(app).items():
        public = operations[key].get("security") == []
        # GitLab Duo's endpoints check the instance's token themselves (api.duo_auth), not the middleware.
        checked = getattr(resource, "authenticate", True) is not False or getattr(resource, "instance_token", False)
        assert public == (not checked), key


def error_formats(operation: dict, document: dict) -> set[str]:
    """The error formats an operation's 4xx/5xx answers are documented in, as far as its own
    answers go (the web worker's refusals of malformed requests may come in OpenAI's anywhere)."""
    formats = set()
    for status, answer in operation["responses"].items():
        if int(status) < 400 or "$ref" not in answer:  # /ready's own 503 body
            continue
        name = answer["$ref"].rsplit("/", 1)[1]
        if name.startswith("OpenAI"):
            formats.add("openai")
        elif name.startswith("Anthropic"):
            formats.add("anthropic")
        elif name.startswith("ModelsError"):
            formats.add("either")
        elif name.startswith("Duo"):
            formats.add("duo")
    return formats


def test_errors_are_documented_in_the_format_the_resource_answers_in(app, document) -> None:
    operations = documented(document)
    for key, resource in served(app).items():
        formats = error_formats(operations[key], document)
        if hasattr(resource, "wire_for"):  # chooses per request: the Anthropic SDK's anthropic-version
            assert formats == {"either"}, key
        elif getattr(resource, "wire", None) == "duo":  # GitLab's AI gateway's, public or not
            assert formats == {"duo"}, key
        elif getattr(resource, "authenticate", True) is False:
            assert formats == set(), key  # /health, /ready: only the web worker's refusals
        else:  # the Responses API's wire streams its own events; its errors are OpenAI's
            wire = getattr(resource, "wire", "openai")
            assert formats == {"openai" if wire == "responses" else wire}, key
