"""Redis keys: no input, however hostile, names another key of its kind or a key of another kind.

Every key kind the gateway writes is built here from the same hostile claims (``:``-suffixed
lock and done names, glob characters, newlines, unicode, very long text), and the keys are
checked to be distinct for distinct inputs, disjoint across kinds, and of a fixed shape.
"""

from __future__ import annotations

import itertools

import pytest

from shared.config import parse_config
from shared.keys import (
    GITLAB_CACHE_KINDS,
    cancel_key,
    claimed_jobs_key,
    claimers_key,
    gitlab_cache_key,
    gitlab_done_key,
    gitlab_lock_key,
    gitlab_rejected_key,
    key_part,
    reply_stream_key,
    response_key,
)
from shared.ratelimit import limits_for

HOSTILE = [
    "alice/scratch", "alice/scratch:lock", "alice/scratch:done", "alice/scratch%3Alock", "alice/scratch%253Alock",
    "101", "101:lock", "101:done", ":lock", ":done", "lock", "done", ":", "::", "", " ", "*", "a*b", "?", "[a]",
    "\\", "\n", "a\nb", "a\r\nb", "\x00", "\t", "ünïcødé", "日本/語", "\ud800", "%", "%%", "%25", "a:b", "a%3Ab",
    "a/b", "a//b", "/", ".", "..", "../..", "x" * 10_000, "x" * 10_000 + ":lock", "aigw:gitlab:project:101",
    "rejected", "rejected:token:abc", "token:abc", "101:2", "member:101:2",
]
GLOB_OR_CONTROL = set("*?[]\\ \t\r\n\x00")


def kinds() -> dict[str, callable]:
    """Every key kind, as a function of one piece of outside text."""
    built = {
        "reply": reply_stream_key,
        "cancel": cancel_key,
        "claimed": claimed_jobs_key,  # worker and queue names come from config and hosts, checked all the same
        "claimers": claimers_key,
        "response": response_key,  # a response id a client names in a path or previous_response_id
        "rejected-token": lambda text: gitlab_rejected_key("token", text),
        "rejected-job": lambda text: gitlab_rejected_key("job", text),
    }
    for kind, parts in GITLAB_CACHE_KINDS.items():
        if parts == 1:
            built[f"cache-{kind}"] = lambda text, kind=kind: gitlab_cache_key(kind, text)
        else:  # a member: the text as either part
            built[f"cache-{kind}-project"] = lambda text, kind=kind: gitlab_cache_key(kind, text, "2")
            built[f"cache-{kind}-user"] = lambda text, kind=kind: gitlab_cache_key(kind, "101", text)
    for name, make in list(built.items()):
        if name.startswith("cache-"):
            built[f"lock-{name}"] = lambda text, make=make: gitlab_lock_key(make(text))
            built[f"done-{name}"] = lambda text, make=make: gitlab_done_key(make(text))
    return built


def all_keys() -> dict[str, dict[str, str]]:
    return {name: {text: make(text) for text in HOSTILE} for name, make in kinds().items()}


def test_distinct_inputs_give_distinct_keys_in_every_kind():
    for name, keys in all_keys().items():
        assert len(set(keys.values())) == len(HOSTILE), name


def test_no_input_reaches_a_key_of_another_kind():
    by_kind = {name: set(keys.values()) for name, keys in all_keys().items()}
    for (one, a), (other, b) in itertools.combinations(by_kind.items(), 2):
        assert not a & b, (one, other, sorted(a & b)[:3])


def test_every_key_of_a_kind_has_the_same_fixed_words_and_no_glob_or_control_character():
    for name, keys in all_keys().items():
        shapes = {key.count(":") for key in keys.values()}
        assert len(shapes) == 1, name  # a part never holds a ':', so the kind's words stay in place
        prefixes = {key.rsplit(":", 1 if not name.endswith("-project") else 2)[0] for key in keys.values()}
        assert len(prefixes) == 1, (name, sorted(prefixes)[:3])
        for key in keys.values():
            assert not GLOB_OR_CONTROL & set(key), (name, key[:80])
            assert key.isascii()


def test_the_attack_of_the_issue_no_longer_names_the_real_project_s_lock():
    real = gitlab_cache_key("project", "alice/scratch")
    for suffix in (":lock", ":done"):
        claimed = gitlab_cache_key("project", "alice/scratch" + suffix)
        assert claimed not in (gitlab_lock_key(real), gitlab_done_key(real))
        assert claimed == "aigw:gitlab:project:alice/scratch%3A" + suffix[1:]
    assert gitlab_lock_key(real) == "aigw:gitlab-lock:project:alice/scratch"
    assert gitlab_done_key(real) == "aigw:gitlab-done:project:alice/scratch"


def test_plain_parts_are_kept_as_they_are():
    for text in ("101", "acme/platform/api", "a" * 64, "my-model_v1.2"):
        assert key_part(text) == text


@pytest.mark.parametrize("bad", [("token",), ("member", "1"), ("project", "1", "2"), ("nope", "1")])
def test_a_cache_key_needs_a_known_kind_and_its_number_of_parts(bad):
    with pytest.raises(ValueError):
        gitlab_cache_key(*bad)


def test_lock_and_done_keys_are_made_from_cache_keys_only():
    for not_a_cache_key in ("aigw:reply:1", "alice/scratch", "aigw:gitlab-lock:project:x"):
        with pytest.raises(ValueError):
            gitlab_lock_key(not_a_cache_key)
        with pytest.raises(ValueError):
            gitlab_done_key(not_a_cache_key)


# -- rate-limit keys: route names come from the config, user and project ids from GitLab ---------

def limit_keys(route_name: str, per: str | None, caller: str | None) -> tuple[str, ...]:
    route = {"name": route_name, "match": {"model_name": "m"},
             "rate_limit": {"requests_per_minute": 5, **({"per": per} if per else {})}}
    config = parse_config({"models": [{"name": "m", "type": "generic", "base_url": "http://x.invalid/v1",
                                       "rate_limit": {"requests_per_minute": 9}}], "routes": [route]}, {})
    limits = limits_for(config.models[0], config.routes[0], caller, caller)
    return tuple(key for limit in limits[1:] for key in limit.keys)  # the route's own limit


def test_rate_limit_keys_of_distinct_routes_and_callers_never_meet():
    names = ["acme", "acme:user:2", "acme:project:2", "a:b", "a%3Ab", "route x", "ü", "*"]
    seen: dict[tuple[str, ...], tuple] = {}
    for name in names:
        for per, caller in [(None, None), ("user", "2"), ("user", "2:x"), ("project", "2"), ("user", "-"),
                            ("project", None)]:
            keys = limit_keys(name, per, caller)
            assert keys not in seen, (name, per, caller, seen.get(keys))
            seen[keys] = (name, per, caller)
            for key in keys:
                assert not GLOB_OR_CONTROL & set(key) and key.isascii()
    model_keys = {key for limit in limits_for(parse_config({"models": [{"name": "m", "type": "generic",
                  "base_url": "http://x.invalid/v1", "rate_limit": {"requests_per_minute": 9}}]}, {}).models[0],
                  None, None, None) for key in limit.keys}
    assert not model_keys & {key for keys in seen for key in keys}
