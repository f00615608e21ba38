"""What a debug record of an upstream call may show of its URL (workers.upstream.loggable_url)."""

from __future__ import annotations

import pytest

from workers.upstream import loggable_url


@pytest.mark.parametrize(("url", "shown"), [
    ("https://api.openai.com/v1/chat/completions", "https://api.openai.com/v1/chat/completions"),
    ("https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/l/publishers/google/models/m"
     ":streamGenerateContent?alt=sse",
     "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/l/publishers/google/models/m"
     ":streamGenerateContent?alt=sse"),
    ("http://user:s3cret@vllm.internal:8000/v1/completions", "http://vllm.internal:8000/v1/completions"),
    ("https://h/v1/embeddings?api-key=s3cret&alt=sse&key", "https://h/v1/embeddings?api-key=[redacted]&alt=sse&key=[redacted]"),
    ("https://h/v1/x#s3cret", "https://h/v1/x"),
])
def test_credentials_never_show(url, shown) -> None:
    assert loggable_url(url) == shown
    assert "s3cret" not in loggable_url(url)
