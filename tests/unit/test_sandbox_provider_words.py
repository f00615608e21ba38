"""The sandbox's `words=N` directive: a long answer from a short prompt, whole or streamed."""

from __future__ import annotations

import pytest

from sandbox.provider import parse_directive
from sandbox.provider_logic import MAX_WORDS, repeat_words
from tests.unit.sandbox_fixtures import chat, chat_body, post_stream, sse


def test_repeat_words_cycles_the_text():
    assert repeat_words("a b c", 7) == "a b c a b c a"
    assert repeat_words("", 3) == "word word word"
    assert repeat_words("x", 1) == "x"


@pytest.mark.parametrize("bad", ["words=0", f"words={MAX_WORDS + 1}", "words=", "words=-3"])
def test_words_is_bounded(bad):
    with pytest.raises(ValueError):
        parse_directive(f"[[sandbox {bad}]] hi")


def test_a_long_answer_whole_and_streamed(base):
    whole = chat(base, "[[sandbox words=5000]] alpha beta").json()
    text = whole["choices"][0]["message"]["content"]
    assert text == "Sandbox reply: " + repeat_words("alpha beta", 5000)
    assert whole["usage"]["completion_tokens"] == 5002
    response, _ = post_stream(base, "/v1/chat/completions", chat_body("[[sandbox words=5000]] alpha beta",
                                                                      stream=True))
    events = sse(response)
    streamed = "".join(data["choices"][0]["delta"].get("content") or "" for _, data in events[:-1])
    assert streamed == text and events[-1] == (None, "[DONE]")
