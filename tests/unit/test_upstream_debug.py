"""What a debug record of an upstream call may show of its URL (workers.upstream.loggable_url),
and what a client reads when no answer came (workers.upstream.failure_reason)."""

from __future__ import annotations

import ssl

import pytest
import requests
import urllib3

from tools.embedded_redis import free_port
from workers.upstream import failure_reason, loggable_url


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


def test_a_refused_connection_reads_as_the_system_says_it() -> None:
    """Not as requests' str() nests urllib3's errors: class names, pool, the URL."""
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        requests.post(f"http://127.0.0.1:{free_port()}/v1/chat/completions?key=s3cret", timeout=5)
    assert "NewConnectionError" in str(caught.value)  # what the client must not see
    assert failure_reason(caught.value) == "Connection refused"


def test_a_certificate_failure_says_why() -> None:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    cause.verify_message = "self-signed certificate"
    wrapped = requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(None, "/", reason=cause))
    assert failure_reason(wrapped) == "certificate verify failed: self-signed certificate"


def test_without_a_reason_a_plain_one() -> None:
    assert failure_reason(requests.exceptions.ConnectionError("HTTPConnectionPool(...)")) == "the connection failed"
    assert failure_reason(requests.exceptions.ChunkedEncodingError("ProtocolError(...)")) == "no answer came"
