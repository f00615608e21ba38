"""The sandbox provider's context windows: a model id ending in -ctx<N> refuses a longer prompt with
the provider's own context-length error (OpenAI's code, Anthropic's message); another id has none."""

from __future__ import annotations

import pytest

from sandbox.provider_logic import RequestError, chat_answer

FIVE_WORDS = [{"role": "user", "content": "one two three four five"}]


def test_an_openai_prompt_over_the_window_gets_openai_s_context_length_error():
    with pytest.raises(RequestError) as refused:
        chat_answer("openai", {"model": "small-ctx4", "messages": FIVE_WORDS}, "d" * 64)
    assert refused.value.code == "context_length_exceeded" and refused.value.param == "messages"
    assert refused.value.status == 400
    assert str(refused.value).startswith("This model's maximum context length is 4 tokens. However, your "
                                         "messages resulted in 5 tokens.")


def test_an_anthropic_prompt_over_the_window_gets_anthropic_s_message():
    body = {"model": "small-ctx4", "max_tokens": 10, "messages": FIVE_WORDS}
    with pytest.raises(RequestError) as refused:
        chat_answer("anthropic", body, "d" * 64)
    assert str(refused.value) == "prompt is too long: 5 tokens > 4 maximum" and refused.value.status == 400


@pytest.mark.parametrize("model", ["small-ctx5", "large", "ctx4", None])
def test_a_prompt_within_the_window_or_without_one_is_answered(model):
    answer, _ = chat_answer("openai", {"model": model, "messages": FIVE_WORDS}, "d" * 64)
    assert answer.text == "Sandbox reply: one two three four five" and answer.prompt_tokens == 5
