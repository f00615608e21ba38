"""Route matching and credential parsing: pure logic, in process."""

from __future__ import annotations

import falcon.testing
import pytest

from api.identity import Identity, credential_from
from api.routing import Router
from shared.config import parse_config
from shared.errors import MissingCredentials, ModelNotFound, NoRoute, Unauthorized

MODELS = [{"name": n, "type": "generic", "base_url": "http://x.invalid/v1"} for n in ("a", "b", "c")]


def router(routes=None) -> Router:
    data = {"models": MODELS}
    if routes is not None:
        data["routes"] = routes
    return Router(parse_config(data, {}))


ALICE_IN_101 = Identity("2", "alice", "101", "acme/platform/ml/models", ("12", "11", "10"), "token")
ALICE_NO_PROJECT = Identity("2", "alice", credential="token")
DAVE_IN_200 = Identity("5", "dave", "200", "other/secret", ("20",), "token")


def test_without_routes_every_model_by_its_own_name():
    r = router()
    assert r.resolve(ALICE_NO_PROJECT, "b").model.name == "b"
    assert r.resolve(ALICE_NO_PROJECT, "b").route is None
    assert [name for name, _ in r.visible_models(ALICE_NO_PROJECT)] == ["a", "b", "c"]
    with pytest.raises(ModelNotFound):
        r.resolve(ALICE_NO_PROJECT, "zzz")


def test_with_routes_deny_by_default():
    r = router([])
    with pytest.raises(NoRoute):
        r.resolve(ALICE_IN_101, "a")
    assert r.visible_models(ALICE_IN_101) == []


def test_group_route_covers_every_ancestor_and_first_match_wins():
    r = router([
        {"name": "ml", "match": {"gitlab_group_id": 12, "model_name": "a"}, "destination": "b"},
        {"name": "acme", "match": {"gitlab_group_id": ["10"]}},
    ])
    assert (r.resolve(ALICE_IN_101, "a").model.name, r.resolve(ALICE_IN_101, "a").route_name) == ("b", "ml")
    assert (r.resolve(ALICE_IN_101, "c").model.name, r.resolve(ALICE_IN_101, "c").route_name) == ("c", "acme")
    with pytest.raises(NoRoute):
        r.resolve(DAVE_IN_200, "a")


def test_all_keys_must_hold_and_lists_are_any_of():
    r = router([{"name": "x", "match": {"gitlab_user_id": [2, 3], "gitlab_project_id": "101",
                                        "model_name": ["a", "c"]}}])
    assert r.resolve(ALICE_IN_101, "c").route_name == "x"
    with pytest.raises(NoRoute):
        r.resolve(ALICE_IN_101, "b")  # model not listed
    with pytest.raises(NoRoute):
        r.resolve(ALICE_NO_PROJECT, "a")  # project required


def test_project_by_path_case_insensitive():
    r = router([{"name": "p", "match": {"gitlab_project_id": "ACME/Platform/ML/models"}}])
    assert r.resolve(ALICE_IN_101, "a").route_name == "p"


def test_alias_names_are_known_only_through_routes():
    r = router([{"name": "alias", "match": {"model_name": "fast", "gitlab_user_id": 2}, "destination": "a"},
                {"name": "rest", "match": {"gitlab_user_id": 2}}])
    decision = r.resolve(ALICE_NO_PROJECT, "fast")
    assert (decision.model.name, decision.route_name) == ("a", "alias")
    assert {name for name, _ in r.visible_models(ALICE_NO_PROJECT)} == {"a", "b", "c", "fast"}
    with pytest.raises(NoRoute):
        r.resolve(DAVE_IN_200, "fast")  # known name, but no route for dave: 403, not 404
    with pytest.raises(ModelNotFound):
        r.resolve(ALICE_NO_PROJECT, "slow")


def test_refusal_names_model_user_and_project_and_hints_at_the_header():
    r = router([{"name": "g", "match": {"gitlab_group_id": 10}}])
    with pytest.raises(NoRoute) as refused:
        r.resolve(ALICE_NO_PROJECT, "a")
    assert "'a'" in refused.value.message and "'alice'" in refused.value.message
    assert "X-Gitlab-Project-Id" in refused.value.message
    with pytest.raises(NoRoute) as elsewhere:
        r.resolve(DAVE_IN_200, "a")
    assert "other/secret" in elsewhere.value.message and "X-Gitlab-Project-Id" not in elsewhere.value.message


def request(headers: dict):
    return falcon.testing.create_req(headers=headers)


@pytest.mark.parametrize(("headers", "kind", "secret"), [
    ({"Authorization": "Bearer s3cr3t"}, "token", "s3cr3t"),
    ({"Authorization": "bearer  s3cr3t "}, "token", "s3cr3t"),
    ({"PRIVATE-TOKEN": "s3cr3t"}, "token", "s3cr3t"),
    ({"x-api-key": "s3cr3t"}, "token", "s3cr3t"),
    ({"Authorization": "Bearer s3cr3t", "x-api-key": "s3cr3t"}, "token", "s3cr3t"),  # the same token twice is fine
    ({"JOB-TOKEN": "j0b-s3cr3t"}, "job", "j0b-s3cr3t"),
])
def test_credentials(headers, kind, secret):
    credential = credential_from(request(headers))
    assert (credential.kind, credential.secret) == (kind, secret)
    assert secret not in repr(credential)


@pytest.mark.parametrize(("headers", "error"), [
    ({}, MissingCredentials),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, Unauthorized),
    ({"Authorization": "Bearer "}, Unauthorized),
    ({"Authorization": "Bearer one", "PRIVATE-TOKEN": "two"}, Unauthorized),
    ({"JOB-TOKEN": "j0b-s3cr3t", "Authorization": "Bearer s3cr3t"}, Unauthorized),  # two credentials: refused
])
def test_bad_credentials(headers, error):
    with pytest.raises(error):
        credential_from(request(headers))
