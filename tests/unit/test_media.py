"""The request body's nesting limit (api.media), on the parsed value and through the app."""

from __future__ import annotations

import falcon.testing
import orjson
import pytest

from api.app import create_app
from api.media import MAX_DEPTH, nests_deeper
from shared.config import parse_config
from shared.settings import Settings
from tests.unit.test_api_app import FixedIdentity, assert_openai_error


def nested(depth: int, *, inner=None, kind: str = "list"):
    value = inner
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def nested_text(depth: int, kind: str) -> bytes:
    """The JSON text of ``nested(depth, kind=kind)``, written directly: orjson writes 254 levels at most."""
    if kind == "list":
        return b"[" * depth + b"null" + b"]" * depth
    return b'{"k":' * depth + b"null" + b"}" * depth


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [1, 2, MAX_DEPTH - 1, MAX_DEPTH])
def test_a_value_at_or_under_the_limit_passes(depth, kind) -> None:
    value = nested(depth, kind=kind)
    assert orjson.loads(nested_text(depth, kind)) == value
    assert not nests_deeper(value, MAX_DEPTH)
    assert not nests_deeper(value, MAX_DEPTH, nested_text(depth, kind))


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, MAX_DEPTH + 2, 1000])
def test_a_value_over_the_limit_is_caught(depth, kind) -> None:
    value = nested(depth, kind=kind)
    assert nests_deeper(value, MAX_DEPTH)
    assert nests_deeper(value, MAX_DEPTH, nested_text(depth, kind))


def test_the_deep_path_is_found_wherever_it_is() -> None:
    """Siblings before and after it, lists and objects mixed, scalars in between."""
    deep = nested(MAX_DEPTH - 1, inner={"last": [1, "x", None]}, kind="dict")  # MAX_DEPTH + 1 levels with the root
    shallow = [nested(10), {"a": "b"}, 3, "s", nested(MAX_DEPTH - 2)]
    assert nests_deeper({"before": shallow, "deep": deep, "after": shallow}, MAX_DEPTH)
    assert not nests_deeper({"before": shallow, "after": shallow}, MAX_DEPTH)


def test_brackets_inside_strings_do_not_count() -> None:
    """The text's bracket count only answers early when it is low; strings full of brackets
    still get the exact walk."""
    value = {"messages": [{"role": "user", "content": "[" * 5000 + "{" * 5000}]}
    assert not nests_deeper(value, MAX_DEPTH, orjson.dumps(value))


def test_scalars_and_empty_containers() -> None:
    for value in ("text", 1, None, [], {}):
        assert not nests_deeper(value, MAX_DEPTH, orjson.dumps(value))


@pytest.fixture(scope="module")
def client() -> falcon.testing.TestClient:
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://127.0.0.1:9/v1"}]}, {})
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"), config, authenticator=FixedIdentity())
    return falcon.testing.TestClient(app)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 1025, 5000])
def test_a_body_nested_too_deep_is_refused_before_anything_reads_it(client, depth) -> None:
    """1025 and deeper are past orjson's own limit, which it reports as malformed JSON:
    the same answer, which holds the message orjson gives that case."""
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "extra": ' + \
        b"[" * depth + b"]" * depth + b"}"
    result = client.simulate_post("/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    error = assert_openai_error(result, 400, "invalid_request")
    assert f"{MAX_DEPTH} levels" in error["message"]
