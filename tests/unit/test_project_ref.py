"""X-Gitlab-Project-Id is checked before anything asks GitLab: ids, full paths, and everything else."""

from __future__ import annotations

import pytest

from api.project_ref import ProjectRef, project_ref
from shared.errors import InvalidRequest


@pytest.mark.parametrize("raw,key", [
    ("100", "100"),
    ("0100", "100"),  # GitLab reads the digits as a number too
    (" 7 ", "7"),
    ("9" * 19, "9" * 19),
    ("acme/platform/api", "acme/platform/api"),
    ("Acme/Platform/API", "acme/platform/api"),  # GitLab's full paths ignore case
    ("a", "a"),
    ("group.name/my-project_2", "group.name/my-project_2"),
    ("a.../b..c/.d", "a.../b..c/.d"),
    ("/".join(["s"] * 20), "/".join(["s"] * 20)),
    ("a/" + "b" * 253, "a/" + "b" * 253),  # 255 characters
    ("123/456", "123/456"),
    ("-1", "-1"), ("1e3", "1e3"),  # paths, as GitLab reads them
    (100, "100"),
])
def test_valid_references(raw, key):
    ref = project_ref(raw)
    assert isinstance(ref, ProjectRef) and ref.key == key and ref.text == str(raw).strip()


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_no_reference(raw):
    assert project_ref(raw) is None


@pytest.mark.parametrize("raw", [
    ".", "..", "./x", "a/./b", "a/../b", "x/..", "../../admin",
    "/", "/acme/api", "acme/api/", "a//b",
    "9" * 20,  # beyond a 64-bit id, and no path is all digits
    "/".join(["s"] * 21),
    "a/" + "b" * 254,  # 256 characters
    "x" * 8000,
    "alice/scratch:lock", "101:lock", "101:done", "*", "a b", "a\nb", "a\tb", "ünï", "a%2Fb", "a?b", "a#b",
    "acme\\api", "+7", "١٢٣",
])
def test_invalid_references_are_400_naming_the_header(raw):
    with pytest.raises(InvalidRequest) as refused:
        project_ref(raw)
    assert refused.value.status == 400 and refused.value.code == "invalid_request"
    assert refused.value.param == "X-Gitlab-Project-Id"
    assert str(raw)[:50] not in refused.value.message or len(str(raw)) < 3  # the bad value is not echoed
