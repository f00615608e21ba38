"""OpenAI Embeddings <-> Vertex AI text-embedding ``predict`` translation (pure functions).

Whatever the OpenAI request asks for that Vertex cannot honour is refused with
``UnsupportedParameter`` naming the field, as for chat (``gemini``).
"""

from __future__ import annotations

from typing import Any

from shared.errors import InvalidRequest
from workers.translate.gemini import unsupported
from workers.translate.refusals import refuse_unknown_keys

_EMBEDDING_KEYS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


def embeddings_request_to_predict(body: dict) -> dict:
    """OpenAI embeddings request -> Vertex text-embedding ``predict`` body."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object")
    refuse_unknown_keys(body, _EMBEDDING_KEYS, unsupported, equivalent="Vertex AI embeddings")
    inp = body.get("input")
    texts = [inp] if isinstance(inp, str) else inp
    if not isinstance(texts, list) or not texts or not all(isinstance(x, str) for x in texts):
        if isinstance(inp, list) and inp and all(isinstance(x, int | list) and not isinstance(x, bool) for x in inp):
            raise unsupported("input", "token arrays: Vertex AI embeds text only")
        raise InvalidRequest("'input' must be a string or a non-empty list of strings", param="input")
    if body.get("encoding_format") not in (None, "float"):
        raise unsupported("encoding_format", "only float")
    out: dict[str, Any] = {"instances": [{"content": text} for text in texts]}
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            raise InvalidRequest("'dimensions' must be a positive integer", param="dimensions")
        out["parameters"] = {"outputDimensionality": dimensions}
    return out


def predict_response_to_embeddings(resp: dict, *, requested_model: str) -> dict:
    """Vertex ``predict`` response -> OpenAI embeddings list."""
    data, tokens = [], 0
    for i, prediction in enumerate(resp.get("predictions") or []):
        embeddings = (prediction or {}).get("embeddings") or {}
        data.append({"object": "embedding", "index": i, "embedding": list(embeddings.get("values") or [])})
        tokens += int((embeddings.get("statistics") or {}).get("token_count") or 0)
    return {"object": "list", "data": data, "model": requested_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
