"""GitLab Duo's caller (api.duo_auth, api.duo_keys) in process, against the GitLab stand-in (a real
loopback server publishing OIDC discovery and keys, minting the instance's tokens) and a real
(embedded) Redis: every refusal GitLab's AI gateway answers, in its words; the keys' fetch, its
bound and rotation; the user header trusted only with a valid token; the project only with access.
The same through gunicorn: tests/integration/test_duo_auth.py."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import falcon.testing
import pytest
import requests

from api.duo_auth import BAD_SCHEME, FORBIDDEN, MISSING, NOT_OIDC, DuoAuthenticator, DuoCaller
from api.duo_keys import InstanceKeys, _signing_keys
from api.errors import DuoForbidden, DuoUnauthorized
from api.gitlab import GitLabClient
from api.gitlab_cache import GitLabCache
from api.identity import Authenticator, Identity
from sandbox.gitlab_data import ADMIN_TOKEN
from sandbox.gitlab_oidc import INSTANCE_ID
from shared.config_types import DuoConfig, GitLabConfig
from shared.errors import GitLabUnavailable, duo_error_body
from tests.duo_requests import GLOBAL_USER_ID, headers_18, mint

DISCOVERY, JWKS = "/.well-known/openid-configuration", "/oauth/discovery/keys"
CODE = ("complete_code",)


class Clock:
    """The keys' clock, moved by the test: the refetch bound without sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(client, gitlab_url, *, clock=None, interval: float = 60.0, max_age: float = 3600.0,
         **duo) -> DuoAuthenticator:
    config = GitLabConfig(cache_ttl=60.0, local_cache_ttl=0.0, outage_grace=60.0, timeout=5.0)
    gitlab = GitLabClient(gitlab_url, ADMIN_TOKEN, config)
    cache = GitLabCache(client, client, outage_grace=config.outage_grace, fetch_timeout=config.timeout,
                        local_ttl=config.local_cache_ttl)
    keys = InstanceKeys(gitlab.oidc_keys, refetch_interval=interval, max_age=max_age, clock=clock or Clock())
    return DuoAuthenticator(keys, Authenticator(gitlab, cache, client, config), DuoConfig(**duo))


def request(headers: dict):
    req = falcon.testing.create_req(headers=headers)
    req.context = SimpleNamespace(log={})
    return req


def calls(gitlab_url: str, prefix: str = "") -> list[str]:
    found = requests.get(f"{gitlab_url}/_gitlab/calls", timeout=5).json()["calls"]
    return [call["path"] for call in found if call["path"].startswith(prefix)]


def refused(auth: DuoAuthenticator, headers: dict, unit_primitives=CODE, **kwargs):
    req = request(headers)
    with pytest.raises((DuoUnauthorized, DuoForbidden)) as caught:
        auth.identify(req, unit_primitives=unit_primitives, **kwargs)
    return caught.value, req


# -- who: the instance, the user, the project -------------------------------------------------

def test_an_18x_request_names_the_instance_the_user_and_the_project_the_user_may_use(client, gitlab_url):
    auth = make(client, gitlab_url)
    req = request(headers_18(mint(gitlab_url)))
    caller = auth.identify(req, unit_primitives=CODE, project_path="acme/platform/api")
    assert caller == DuoCaller(
        Identity("2", "alice", "100", "acme/platform/api", ("11", "10"), "duo"), INSTANCE_ID, "self-managed",
        ("complete_code", "generate_code", "duo_chat", "duo_classic_chat", "explain_code", "refactor_code",
         "fix_code", "write_tests", "documentation_search"))
    assert req.context.identity == caller.identity  # what the access record names
    assert req.context.log["gitlab_instance_id"] == INSTANCE_ID
    # The keys came through discovery, once; the user and the project through the gateway's own token.
    assert calls(gitlab_url, DISCOVERY) == [DISCOVERY] and calls(gitlab_url, JWKS) == [JWKS]
    assert calls(gitlab_url, "/api/v4/users/") == ["/api/v4/users/2"]
    again = auth.identify(request(headers_18(mint(gitlab_url))), unit_primitives=CODE,
                          project_path="acme/platform/api")
    assert again == caller
    assert len(calls(gitlab_url)) == len(set(calls(gitlab_url))), "the second request asked GitLab again"


def test_a_17x_request_has_no_user_and_so_no_project_and_code_suggestions_serves_both_code_features(
        client, gitlab_url):
    auth = make(client, gitlab_url)
    token = mint(gitlab_url, claims={"aud": "gitlab-ai-gateway", "scopes": ["code_suggestions", "duo_chat"]})
    # 17.x: Mixed-Case Cloud Connector headers, no user id (EE17 ee/lib/cloud_connector.rb).
    headers = {"Authorization": f"Bearer {token}", "X-Gitlab-Authentication-Type": "oidc",
               "X-Gitlab-Instance-Id": INSTANCE_ID, "X-Gitlab-Realm": "self-managed"}
    for feature in (("complete_code",), ("generate_code",)):
        caller = auth.identify(request(headers), unit_primitives=feature, project_path="acme/platform/api")
        assert caller.identity == Identity(credential="duo", rate_key=f"instance-{INSTANCE_ID}",
                                           instance_id=INSTANCE_ID)
        assert caller.scopes == ("code_suggestions", "duo_chat")
    assert calls(gitlab_url, "/api/v4") == []  # nobody to look up: no project either
    error, _ = refused(auth, headers, ("explain_code",))
    assert isinstance(error, DuoForbidden)


@pytest.mark.parametrize("user_header", ["999", "0", "2; DROP", "-2", "", "12345678901234567890"])
def test_a_user_header_naming_no_gitlab_user_is_no_user(client, gitlab_url, user_header):
    auth = make(client, gitlab_url)
    caller = auth.identify(request(headers_18(mint(gitlab_url), x_gitlab_user_id=user_header)),
                           unit_primitives=CODE, project_path="acme/platform/api")
    assert caller.identity == Identity(credential="duo", rate_key=f"instance-{INSTANCE_ID}-user-{GLOBAL_USER_ID}",
                                       instance_id=INSTANCE_ID)
    assert calls(gitlab_url, "/api/v4/projects") == []
    assert calls(gitlab_url, "/api/v4/users/") == (["/api/v4/users/999"] if user_header == "999" else [])


@pytest.mark.parametrize(("user", "project_path", "project"), [
    ("2", "acme/platform/api", ("100", "acme/platform/api")),  # alice: Developer, through group acme
    ("2", "ACME/Platform/API", ("100", "acme/platform/api")),  # GitLab's paths ignore case
    ("2", "100", ("100", "acme/platform/api")),
    ("3", "acme/platform/api", (None, None)),  # bob: Reporter, below gitlab.min_access_level
    ("5", "acme/platform/api", (None, None)),  # dave: not a member
    ("2", "other/secret", (None, None)),  # exists, invisible to alice
    ("2", "no/such/project", (None, None)),
    ("2", "../../admin", (None, None)),  # not a project reference at all: never sent to GitLab
    ("2", "", (None, None)),
])
def test_the_project_counts_only_where_the_user_has_the_access_the_gateway_requires(
        client, gitlab_url, user, project_path, project):
    auth = make(client, gitlab_url)
    caller = auth.identify(request(headers_18(mint(gitlab_url), x_gitlab_user_id=user)),
                           unit_primitives=CODE, project_path=project_path)
    assert caller.identity.user_id == user
    assert (caller.identity.project_id, caller.identity.project_path) == project
    if project_path in ("../../admin", ""):
        assert calls(gitlab_url, "/api/v4/projects") == []


@pytest.mark.parametrize(("global_user_id", "rate_key", "logged"), [
    (GLOBAL_USER_ID, f"instance-{INSTANCE_ID}-user-{GLOBAL_USER_ID}", GLOBAL_USER_ID),
    ("Zm9v+YmFy/YmF6=", f"instance-{INSTANCE_ID}-user-Zm9v+YmFy/YmF6=", "Zm9v+YmFy/YmF6="),  # another user's
    (None, f"instance-{INSTANCE_ID}", None),  # no pseudonym: the instance's allowance
    ("a b:c", f"instance-{INSTANCE_ID}", None),  # not GitLab's base64: neither trusted nor logged
])
def test_a_request_without_a_user_is_limited_as_gitlabs_pseudonymous_user_of_its_instance(
        client, gitlab_url, global_user_id, rate_key, logged):
    auth = make(client, gitlab_url)
    req = request(headers_18(mint(gitlab_url), x_gitlab_user_id=None, x_gitlab_global_user_id=global_user_id))
    caller = auth.identify(req, unit_primitives=CODE)
    assert caller.identity.user_id is None and caller.identity.limit_key == rate_key
    assert req.context.log.get("gitlab_global_user_id") == logged  # the access record's
    assert "None" not in caller.identity.describe()
    assert caller.identity.describe() == "a request with no known GitLab user and no project"
    known = auth.identify(request(headers_18(mint(gitlab_url))), unit_primitives=CODE).identity
    assert known.limit_key == "2" and known.rate_key is None  # a known user's own allowance, as ever


def test_project_path_of_another_type_is_no_project(client, gitlab_url):
    auth = make(client, gitlab_url)
    caller = auth.identify(request(headers_18(mint(gitlab_url))), unit_primitives=CODE,
                           project_path={"id": 100})
    assert caller.identity == Identity("2", "alice", credential="duo")


def test_gitlab_unable_to_name_the_user_is_503_not_a_request_without_a_user(client, gitlab_url):
    auth = make(client, gitlab_url)
    token = mint(gitlab_url)
    auth.identify(request(headers_18(token, x_gitlab_user_id="3")), unit_primitives=CODE)  # keys fetched
    requests.post(f"{gitlab_url}/_gitlab/fault", json={"status": 503, "paths": ["/api/v4/users"]},
                  timeout=5).raise_for_status()
    with pytest.raises(GitLabUnavailable):
        auth.identify(request(headers_18(token)), unit_primitives=CODE)


# -- refusals, in GitLab's AI gateway's words ---------------------------------------------------

def expired(gitlab_url):
    now = int(time.time())
    return mint(gitlab_url, claims={"iat": now - 3700, "nbf": now - 3705, "exp": now - 100})


def not_yet(gitlab_url):
    now = int(time.time())
    return mint(gitlab_url, claims={"iat": now, "nbf": now + 300})


@pytest.mark.parametrize(("case", "headers", "message"), [
    ("missing", lambda url: headers_18(mint(url), Authorization=None), MISSING),
    ("basic scheme", lambda url: headers_18(mint(url), Authorization="Basic " + mint(url)), BAD_SCHEME),
    ("bare token", lambda url: headers_18(mint(url), Authorization=mint(url)), BAD_SCHEME),
    ("no type", lambda url: headers_18(mint(url), X_Gitlab_Authentication_Type=None), NOT_OIDC),
    ("wrong type", lambda url: headers_18(mint(url), X_Gitlab_Authentication_Type="bearer"), NOT_OIDC),
    ("wrong audience", lambda url: headers_18(mint(url, claims={"aud": ["gitlab-duo-workflow-service"]})),
     FORBIDDEN),
    ("no audience", lambda url: headers_18(mint(url, claims={"aud": None})), FORBIDDEN),
    ("expired", lambda url: headers_18(expired(url)), FORBIDDEN),
    ("not yet valid", lambda url: headers_18(not_yet(url)), FORBIDDEN),
    ("no exp", lambda url: headers_18(mint(url, claims={"exp": None})), FORBIDDEN),
    ("unpublished key", lambda url: headers_18(mint(url, key="unpublished")), FORBIDDEN),
    ("unpublished key, a published kid", lambda url: headers_18(
        mint(url, key="unpublished", kid=requests.get(url + JWKS, timeout=5).json()["keys"][-1]["kid"])),
     FORBIDDEN),
    ("HS256 with the public key", lambda url: headers_18(mint(url, alg="HS256")), FORBIDDEN),
    ("not a JWT", lambda url: headers_18("not-a-jwt"), FORBIDDEN),
    ("empty bearer", lambda url: headers_18(mint(url), Authorization="Bearer "), FORBIDDEN),
    ("no realm claim", lambda url: headers_18(mint(url, claims={"gitlab_realm": None})), FORBIDDEN),
    ("realm mismatch", lambda url: headers_18(mint(url), x_gitlab_realm="saas"),
     "Header mismatch 'X-Gitlab-Realm'"),
    ("no realm header", lambda url: headers_18(mint(url), x_gitlab_realm=None), "Header mismatch 'X-Gitlab-Realm'"),
    ("instance mismatch", lambda url: headers_18(mint(url), x_gitlab_instance_id="999"),
     "Header mismatch 'X-Gitlab-Instance-Id'"),
    ("no instance header", lambda url: headers_18(mint(url), x_gitlab_instance_id=None),
     "Header mismatch 'X-Gitlab-Instance-Id'"),
    ("another instance's sub", lambda url: headers_18(mint(url, claims={"sub": "uuid-not-set"})),
     "Header mismatch 'X-Gitlab-Instance-Id'"),
    ("instance id claim mismatch", lambda url: headers_18(mint(url, claims={"gitlab_instance_id": "other"})),
     "Header mismatch 'X-Gitlab-Instance-Id'"),
])
def test_each_refusal_is_401_in_the_words_of_gitlabs_ai_gateway_and_asks_gitlab_nothing_about_users(
        client, gitlab_url, case, headers, message):
    auth = make(client, gitlab_url)
    error, req = refused(auth, headers(gitlab_url))
    assert isinstance(error, DuoUnauthorized)
    assert (error.status, duo_error_body(error)) == (401, {"error": message})
    assert req.context.log["auth_detail"]  # why, for the access record
    assert not hasattr(req.context, "identity")  # the user header is not believed
    assert calls(gitlab_url, "/api/v4") == []


def test_a_token_within_the_leeway_of_its_exp_still_counts(client, gitlab_url):
    now = int(time.time())
    token = mint(gitlab_url, claims={"iat": now - 3610, "nbf": now - 3615, "exp": now - 10})
    assert make(client, gitlab_url).identify(request(headers_18(token)), unit_primitives=CODE).instance_id


def test_a_missing_unit_primitive_is_403_with_gitlabs_detail(client, gitlab_url):
    auth = make(client, gitlab_url)
    token = mint(gitlab_url, claims={"scopes": ["duo_chat", "explain_code"]})
    for wanted, detail in [(("complete_code",), "Unauthorized to access code completions"),
                           (("generate_code",), "Unauthorized to access code generations"),
                           (("include_file_context",), "Unauthorized to access include_file_context")]:
        error, req = refused(auth, headers_18(token), wanted)
        assert isinstance(error, DuoForbidden)
        assert (error.status, duo_error_body(error)) == (403, {"detail": detail})
        assert "lack" in req.context.log["auth_detail"]
    error, _ = refused(auth, headers_18(token), ("complete_code",),
                       refusal="Unauthorized to access 'model_configuration/check'")
    assert duo_error_body(error) == {"detail": "Unauthorized to access 'model_configuration/check'"}
    no_scopes = mint(gitlab_url, claims={"scopes": None})
    error, _ = refused(auth, headers_18(no_scopes), ("duo_chat", "duo_classic_chat"))
    assert duo_error_body(error) == {"detail": "Unauthorized to access duo chat"}
    assert calls(gitlab_url, "/api/v4") == []
    assert auth.identify(request(headers_18(token)), unit_primitives=("duo_classic_chat", "duo_chat")).identity


def test_pinned_instance_ids(client, gitlab_url):
    token = mint(gitlab_url)
    error, _ = refused(make(client, gitlab_url, instance_ids=("another-instance",)), headers_18(token))
    assert isinstance(error, DuoUnauthorized) and "duo.instance_ids" in error.message
    pinned = make(client, gitlab_url, instance_ids=("another-instance", INSTANCE_ID))
    assert pinned.identify(request(headers_18(token)), unit_primitives=CODE).instance_id == INSTANCE_ID


def test_header_names_in_any_case(client, gitlab_url):
    token = mint(gitlab_url)
    headers = {"AUTHORIZATION": f"bearer {token}", "x-gitlab-authentication-type": "oidc",
               "X-GITLAB-INSTANCE-ID": INSTANCE_ID, "X-Gitlab-Realm": "self-managed", "X-GitLab-User-Id": "2"}
    caller = make(client, gitlab_url).identify(request(headers), unit_primitives=CODE)
    assert caller.identity.username == "alice"


def test_neither_the_token_nor_its_signature_is_ever_logged(client, gitlab_url, caplog):
    caplog.set_level(logging.DEBUG)
    auth = make(client, gitlab_url)
    token, bad = mint(gitlab_url), mint(gitlab_url, key="unpublished")
    auth.identify(request(headers_18(token)), unit_primitives=CODE)
    refused(auth, headers_18(bad))
    refused(auth, headers_18(expired(gitlab_url)))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (token, bad):
        assert secret not in text and secret.rsplit(".", 1)[1] not in text


# -- the keys: fetched once, an unknown kid tried against all, refetched at most once per interval --

def test_a_kid_the_jwks_does_not_name_is_tried_against_every_key(client, gitlab_url):
    auth = make(client, gitlab_url)
    for kid in ("a-kid-gitlab-spells-otherwise", None):
        caller = auth.identify(request(headers_18(mint(gitlab_url, kid=kid))), unit_primitives=CODE)
        assert caller.instance_id == INSTANCE_ID
    assert calls(gitlab_url, JWKS) == [JWKS]  # the keys in hand sufficed: no refetch


def test_an_unknown_key_is_refused_until_gitlab_publishes_it_then_accepted_at_the_next_refetch(
        client, gitlab_url):
    clock = Clock()
    auth = make(client, gitlab_url, clock=clock, interval=60.0)
    auth.identify(request(headers_18(mint(gitlab_url))), unit_primitives=CODE)
    assert calls(gitlab_url, JWKS) == [JWKS]
    clock.now += 61
    # A key GitLab has not published: one refetch, then still refused.
    error, _ = refused(auth, headers_18(mint(gitlab_url, key="unpublished")))
    assert duo_error_body(error) == {"error": FORBIDDEN}
    assert calls(gitlab_url, JWKS) == [JWKS, JWKS]
    # GitLab rotates (cloud_connector:keys:rotate): its new key signs. Within the interval of the last
    # fetch the gateway does not ask again, and refuses.
    requests.post(f"{gitlab_url}/_gitlab/oidc/rotate", json={}, timeout=30).raise_for_status()
    rotated = mint(gitlab_url)
    clock.now += 30
    refused(auth, headers_18(rotated))
    assert calls(gitlab_url, JWKS) == [JWKS, JWKS]
    clock.now += 31
    assert auth.identify(request(headers_18(rotated)), unit_primitives=CODE).instance_id == INSTANCE_ID
    assert calls(gitlab_url, JWKS) == [JWKS] * 3
    # Tokens of the key before the rotation still verify: GitLab still publishes it.
    old = requests.get(f"{gitlab_url}{JWKS}", timeout=5).json()["keys"]
    assert len(old) == 3  # the OIDC key and both Cloud Connector keys


def test_a_flood_of_unknown_keys_costs_gitlab_one_refetch_per_interval(client, gitlab_url):
    clock = Clock()
    auth = make(client, gitlab_url, clock=clock, interval=60.0)
    auth.identify(request(headers_18(mint(gitlab_url))), unit_primitives=CODE)
    clock.now += 61
    forged = [mint(gitlab_url, key="unpublished", kid=f"kid-{n}") for n in range(5)]

    def one(n: int) -> int:
        error, _ = refused(auth, headers_18(forged[n % len(forged)]))
        return error.status

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(200))) == {401}
    assert calls(gitlab_url, JWKS) == [JWKS, JWKS]
    assert calls(gitlab_url, DISCOVERY) == [DISCOVERY, DISCOVERY]
    clock.now += 61
    refused(auth, headers_18(forged[0]))
    refused(auth, headers_18(forged[1]))
    assert calls(gitlab_url, JWKS) == [JWKS] * 3


def test_without_keys_gitlab_unreachable_is_503_and_retried_only_after_the_interval(client, gitlab_url):
    clock = Clock()
    auth = make(client, gitlab_url, clock=clock, interval=60.0)
    requests.post(f"{gitlab_url}/_gitlab/fault", json={"status": 502, "paths": [DISCOVERY]},
                  timeout=5).raise_for_status()
    token = mint(gitlab_url)
    for _ in range(3):
        with pytest.raises(GitLabUnavailable) as caught:
            auth.identify(request(headers_18(token)), unit_primitives=CODE)
        assert caught.value.status == 503 and "signing keys" in caught.value.message
    assert calls(gitlab_url, DISCOVERY) == [DISCOVERY]
    requests.delete(f"{gitlab_url}/_gitlab/fault", timeout=5).raise_for_status()
    clock.now += 61
    assert auth.identify(request(headers_18(token)), unit_primitives=CODE).instance_id == INSTANCE_ID


def test_old_keys_are_refetched_after_max_age_and_kept_if_gitlab_cannot_answer(client, gitlab_url):
    clock = Clock()
    auth = make(client, gitlab_url, clock=clock, interval=60.0, max_age=600.0)
    token = mint(gitlab_url)
    auth.identify(request(headers_18(token)), unit_primitives=CODE)
    clock.now += 601
    requests.post(f"{gitlab_url}/_gitlab/fault", json={"status": 503, "paths": [DISCOVERY]},
                  timeout=5).raise_for_status()
    assert auth.identify(request(headers_18(token)), unit_primitives=CODE).instance_id == INSTANCE_ID
    assert calls(gitlab_url, DISCOVERY) == [DISCOVERY, DISCOVERY]  # tried, failed, old keys served
    requests.delete(f"{gitlab_url}/_gitlab/fault", timeout=5).raise_for_status()
    # GitLab drops every old key (cloud_connector:keys:trim): the next refetch forgets them.
    requests.post(f"{gitlab_url}/_gitlab/oidc/rotate", json={"drop_old": True}, timeout=30).raise_for_status()
    clock.now += 61
    refused(auth, headers_18(token))
    assert calls(gitlab_url, JWKS) == [JWKS, JWKS]


def test_threads_waiting_for_a_refetch_use_its_keys(client, gitlab_url):
    """While one thread fetches, the others wait for it and then use what it brought."""
    clock = Clock()
    auth = make(client, gitlab_url, clock=clock, interval=60.0)
    auth.identify(request(headers_18(mint(gitlab_url))), unit_primitives=CODE)
    requests.post(f"{gitlab_url}/_gitlab/oidc/rotate", json={}, timeout=30).raise_for_status()
    rotated = mint(gitlab_url)
    clock.now += 61
    requests.post(f"{gitlab_url}/_gitlab/fault", json={"delay_ms": 300, "times": 1, "paths": [JWKS]},
                  timeout=5).raise_for_status()
    barrier = threading.Barrier(6)

    def one(_):
        barrier.wait()
        return auth.identify(request(headers_18(rotated)), unit_primitives=CODE).instance_id

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(one, range(6))) == [INSTANCE_ID] * 6
    assert calls(gitlab_url, JWKS) == [JWKS, JWKS]


def test_only_rsa_signature_keys_of_the_jwks_are_kept(gitlab_url):
    published = requests.get(f"{gitlab_url}{JWKS}", timeout=5).json()["keys"]
    good = published[-1]
    jwks = [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "ec"},
            {**good, "use": "enc", "kid": "enc"}, {**good, "alg": "RS512", "kid": "rs512"},
            {**good, "n": "not base64!", "kid": "broken"}, {key: good[key] for key in ("kty", "e", "n")},
            good]
    keys = _signing_keys(jwks)
    assert [key.kid for key in keys] == [None, good["kid"]]


def test_the_stand_ins_discovery_keys_and_users_are_gitlabs_shapes(gitlab_url):
    found = requests.get(f"{gitlab_url}{DISCOVERY}", timeout=5).json()
    assert found["issuer"] == gitlab_url and found["jwks_uri"] == f"{gitlab_url}{JWKS}"
    keys = requests.get(f"{gitlab_url}{JWKS}", timeout=5)
    assert keys.headers["Cache-Control"] == "max-age=86400, public, must-revalidate, no-transform"
    assert [sorted(key) for key in keys.json()["keys"]] == [["alg", "e", "kid", "kty", "n", "use"]] * 2
    own = {"PRIVATE-TOKEN": ADMIN_TOKEN}
    alice = requests.get(f"{gitlab_url}/api/v4/users/2", headers=own, timeout=5)
    assert alice.status_code == 200 and alice.json()["username"] == "alice" and "is_admin" not in alice.json()
    missing = requests.get(f"{gitlab_url}/api/v4/users/999", headers=own, timeout=5)
    assert (missing.status_code, missing.json()) == (404, {"message": "404 User Not Found"})


def test_a_refused_key_document_is_gitlab_unavailable_not_the_gateways_token(client, gitlab_url, caplog):
    caplog.set_level(logging.INFO)
    auth = make(client, gitlab_url)
    requests.post(f"{gitlab_url}/_gitlab/fault", json={"status": 403, "paths": [JWKS]}, timeout=5).raise_for_status()
    with pytest.raises(GitLabUnavailable):
        auth.identify(request(headers_18(mint(gitlab_url))), unit_primitives=CODE)
    [record] = [r for r in caplog.records if r.getMessage() == "GitLab's signing keys could not be fetched"]
    assert record.error == f"GitLab answered HTTP 403 for {gitlab_url}{JWKS}."
    assert not any("GITLAB_API_TOKEN" in r.getMessage() for r in caplog.records)
