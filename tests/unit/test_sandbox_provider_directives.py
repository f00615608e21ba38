"""The sandbox directive syntax (sandbox.provider_directives): items, JSON `args`, what is and is not a directive."""

from __future__ import annotations

import pytest

from sandbox.provider_directives import find_directives, parse_directive, strip_directives


def test_args_take_any_json_object():
    text, opts = parse_directive('run it [[sandbox tool=Bash args={"command": "echo hi", "timeout": 5}]] now')
    assert text == "run it now"
    assert opts == {"tool": "Bash", "args": {"command": "echo hi", "timeout": 5}}
    # brackets, "]]" and newlines inside the JSON belong to it, not to the directive
    text, opts = parse_directive('[[sandbox args={"command": ["bash", "-lc", "echo ]] done"]}\n tool=shell  ]]x')
    assert opts["args"] == {"command": ["bash", "-lc", "echo ]] done"]} and opts["tool"] == "shell" and text == "x"
    # a custom tool's input is a JSON string
    assert parse_directive('[[sandbox tool=apply_patch args="*** Begin Patch\\n"]]')[1]["args"] == "*** Begin Patch\n"


@pytest.mark.parametrize("bad", [
    "[[sandbox tool=x args={not json}]]", '[[sandbox tool=x args={"a": 1]]', "[[sandbox tool=x args=[1, 2]]]",
    "[[sandbox tool=x args=3]]", '[[sandbox args={"a": 1}]]',  # args without a tool
    "[[sandbox tool]]", "[[sandbox tool=]]", "[[sandbox tool=a/b]]", "[[sandbox fail=200]]",
    "[[sandbox fail_after=-1]]", "[[sandbox fial=503]]", "[[sandbox 5]]", "[[sandbox fail:3]]",
    "[[sandbox chunk_delay=5]]",
])
def test_malformed_items_are_refused(bad):
    with pytest.raises(ValueError):
        parse_directive(f"x {bad} y")


def test_what_is_not_a_directive_stays_text():
    for text in ("[[sandboxes are fun]]", "an [[sandbox fail=503 without its end", "[[ sandbox fail=503]]"):
        assert parse_directive(text) == (" ".join(text.split()), {})
        assert find_directives(text) == []
    # an empty directive is one, with nothing in it
    assert parse_directive("a [[sandbox]] b") == ("a b", {})


def test_strip_directives_keeps_the_rest_of_the_text():
    assert strip_directives("one [[sandbox hang]]two [[sandbox tool=x args={\"a\": \"]]\"}]]three") == "one  two  three"
    assert strip_directives("no directive") == "no directive"
    spans = find_directives("ab[[sandbox close]]cd")
    assert [(start, end) for start, end, _ in spans] == [(2, 19)]
