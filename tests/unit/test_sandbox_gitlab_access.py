"""Tests for the GitLab stand-in's projects, memberships and groups, over real HTTP on loopback:
lookups by id and path, effective access levels, visibility and not-found answers.

Identity and tokens: test_sandbox_gitlab.py. Faults, call log, transport and the command line:
test_sandbox_gitlab_controls.py.
"""

from __future__ import annotations

import pytest
import requests

from sandbox import gitlab_data
from sandbox.gitlab_data import (
    ADMIN_TOKEN,
    BOB_TOKEN,
    DAVE_TOKEN,
    DEMO_TOKEN,
    ERIN_TOKEN,
    PROJECT_BOT_TOKEN,
)
from tests.unit.gitlab_fixtures import get, ok

# --- projects and memberships ---

def test_project_shape_by_id_encoded_and_plain_path(gitlab_url):
    expected = {
        "id": 100, "name": "api", "path": "api", "path_with_namespace": "acme/platform/api", "visibility": "private",
        "namespace": {"id": 11, "name": "platform", "path": "platform", "kind": "group",
                      "full_path": "acme/platform", "parent_id": 10},
    }
    assert ok(gitlab_url, "/api/v4/projects/100", DEMO_TOKEN) == expected
    assert ok(gitlab_url, "/api/v4/projects/acme%2Fplatform%2Fapi", DEMO_TOKEN) == expected
    assert ok(gitlab_url, "/api/v4/projects/acme/platform/api", DEMO_TOKEN) == expected


def test_user_namespace_project(gitlab_url):
    project = ok(gitlab_url, "/api/v4/projects/alice%2Fscratch", DEMO_TOKEN)
    assert project["id"] == 300 and project["visibility"] == "private"
    assert project["namespace"] == {"id": 50, "name": "alice", "path": "alice", "kind": "user", "full_path": "alice",
                                    "parent_id": None}
    assert ok(gitlab_url, "/api/v4/projects/300/members/all/2", DEMO_TOKEN)["access_level"] == 50
    assert get(gitlab_url, "/api/v4/projects/300", BOB_TOKEN).status_code == 404


@pytest.mark.parametrize("project", ["100", "101", "102", "acme%2Fplatform%2Fml%2Fmodels"])
def test_alice_inherits_developer_from_group_10(gitlab_url, project):
    member = ok(gitlab_url, f"/api/v4/projects/{project}/members/all/2", DEMO_TOKEN)
    assert member == {"id": 2, "username": "alice", "name": member["name"], "state": "active", "access_level": 30}


def test_effective_level_is_the_highest_of_direct_and_inherited(monkeypatch):
    monkeypatch.setitem(gitlab_data.PROJECT_MEMBERS[101], 2, gitlab_data.REPORTER)
    assert gitlab_data.project_level(101, 2) == 30
    monkeypatch.setitem(gitlab_data.PROJECT_MEMBERS[101], 2, gitlab_data.MAINTAINER)
    assert gitlab_data.project_level(101, 2) == 40


def test_direct_membership_bob_reporter_of_100_only(gitlab_url):
    assert ok(gitlab_url, "/api/v4/projects/100/members/all/3", BOB_TOKEN)["access_level"] == 20
    assert ok(gitlab_url, "/api/v4/projects/100/members/all/3", ADMIN_TOKEN)["username"] == "bob"
    response = get(gitlab_url, "/api/v4/projects/101", BOB_TOKEN)
    assert response.status_code == 404 and response.json() == {"message": "404 Project Not Found"}


def test_dave_maintains_project_200_through_group_20(gitlab_url):
    assert ok(gitlab_url, "/api/v4/projects/other%2Fsecret/members/all/5", DAVE_TOKEN)["access_level"] == 40
    assert get(gitlab_url, "/api/v4/projects/200", DEMO_TOKEN).status_code == 404


def test_public_project_is_visible_but_does_not_make_members(gitlab_url):
    assert ok(gitlab_url, "/api/v4/projects/102", BOB_TOKEN)["path_with_namespace"] == "acme/handbook"
    response = get(gitlab_url, "/api/v4/projects/102/members/all/3", BOB_TOKEN)
    assert response.status_code == 404 and response.json() == {"message": "404 Not found"}
    assert ok(gitlab_url, "/api/v4/projects/102/members/all/2", BOB_TOKEN)["access_level"] == 30


def test_erin_cannot_see_project_100_but_root_can(gitlab_url):
    response = get(gitlab_url, "/api/v4/projects/100", ERIN_TOKEN)
    assert response.status_code == 404 and response.json() == {"message": "404 Project Not Found"}
    members = get(gitlab_url, "/api/v4/projects/100/members/all/3", ERIN_TOKEN)
    assert members.status_code == 404 and members.json() == {"message": "404 Project Not Found"}
    assert ok(gitlab_url, "/api/v4/projects/100", ADMIN_TOKEN)["id"] == 100
    assert ok(gitlab_url, "/api/v4/projects/101/members/all/6", ERIN_TOKEN)["access_level"] == 30


@pytest.mark.parametrize("path,message", [
    ("/api/v4/projects/100/members/all/1", "404 Not found"),  # root is a member of nothing
    ("/api/v4/projects/100/members/all/999", "404 Not found"),
    ("/api/v4/projects/999", "404 Project Not Found"),
    ("/api/v4/projects/nope%2Fnothing", "404 Project Not Found"),
    ("/api/v4/groups/999", "404 Group Not Found"),
    ("/api/v4/projects/100/members/all/abc", "404 Not Found"),
    ("/api/v4/nothing", "404 Not Found"),
    ("/nothing", "404 Not Found"),
])
def test_not_found_messages(gitlab_url, path, message):
    response = get(gitlab_url, path, ADMIN_TOKEN)
    assert response.status_code == 404 and response.json() == {"message": message}


def test_wrong_method_on_an_api_route(gitlab_url):
    response = requests.post(f"{gitlab_url}/api/v4/user", headers={"PRIVATE-TOKEN": DEMO_TOKEN}, timeout=5)
    assert response.status_code == 405


# --- groups ---

def test_group_ancestry_walks_to_the_top(gitlab_url):
    seen, ref = [], "acme%2Fplatform%2Fml"
    while ref is not None:
        group = ok(gitlab_url, f"/api/v4/groups/{ref}")
        assert set(group) == {"id", "name", "path", "full_path", "parent_id", "visibility"}
        assert group["visibility"] == "private"
        seen.append((group["id"], group["full_path"], group["parent_id"]))
        ref = group["parent_id"]
    assert seen == [(12, "acme/platform/ml", 11), (11, "acme/platform", 10), (10, "acme", None)]
    assert ok(gitlab_url, "/api/v4/groups/acme/platform")["id"] == 11


@pytest.mark.parametrize("token,visible", [
    (ADMIN_TOKEN, {10, 11, 12, 20}),
    (DEMO_TOKEN, {10, 11, 12}),  # member of 10, inherited below
    (ERIN_TOKEN, {10, 11, 12}),  # member of project 101, below all three
    (BOB_TOKEN, {10, 11}),  # member of project 100 in group 11
    (DAVE_TOKEN, {20}),
    (PROJECT_BOT_TOKEN, {10, 11}),
])
def test_group_visibility(gitlab_url, token, visible):
    for group_id in (10, 11, 12, 20):
        response = get(gitlab_url, f"/api/v4/groups/{group_id}", token)
        if group_id in visible:
            assert response.status_code == 200 and response.json()["id"] == group_id
        else:
            assert response.status_code == 404 and response.json() == {"message": "404 Group Not Found"}


# --- the project list ---

@pytest.mark.parametrize("path", ["/api/v4/projects", "/api/v4/projects/"])
def test_projects_without_an_id_is_the_list_of_what_the_token_sees(gitlab_url, path):
    assert [p["id"] for p in ok(gitlab_url, path, ADMIN_TOKEN)] == [300, 200, 102, 101, 100]
    assert [p["id"] for p in ok(gitlab_url, path, ERIN_TOKEN)] == [102, 101]  # public, and her own
    assert all(set(p) >= {"id", "path_with_namespace", "namespace"} for p in ok(gitlab_url, path, DEMO_TOKEN))


def test_a_dot_reference_becomes_the_list_on_its_way_there(gitlab_url):
    """Why the gateway checks references before calling: the HTTP client removes dot segments."""
    listed = ok(gitlab_url, "/api/v4/projects/.", ADMIN_TOKEN)
    assert isinstance(listed, list) and len(listed) == 5
