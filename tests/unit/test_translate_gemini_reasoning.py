"""OpenAI chat reasoning_effort -> Gemini thinkingConfig; the pivot's thinking fields on the way in."""

import pytest

from shared.errors import InvalidRequest
from tests.unit.translate_gemini_helpers import USER, convert


@pytest.mark.parametrize(("effort", "budget"), [("none", 0), ("minimal", 1024), ("low", 1024), ("medium", 8192),
                                                 ("high", 24576), ("xhigh", 24576), ("max", 24576)])
def test_effort_becomes_a_thinking_budget(effort, budget):
    out = convert(reasoning_effort=effort, max_tokens=100)
    assert out["generationConfig"] == {"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": budget}}


def test_no_effort_leaves_thinking_to_the_model_and_bad_ones_are_invalid():
    assert "generationConfig" not in convert(reasoning_effort=None)
    with pytest.raises(InvalidRequest) as info:
        convert(reasoning_effort="lots")
    assert info.value.param == "reasoning_effort"


def test_thinking_from_another_target_is_not_sent_to_gemini():
    # Gemini's own signatures travel in tool call ids; Anthropic-shaped thinking means nothing to it.
    out = convert(messages=[USER, {"role": "assistant", "content": "Hi", "reasoning_content": "hmm",
                                   "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "s"}]},
                            USER])
    assert out["contents"][1] == {"role": "model", "parts": [{"text": "Hi"}]}
