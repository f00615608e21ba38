"""Pure request -> answer logic of the Vertex stand-in: checking Gemini and ``:predict`` bodies as Vertex
does, and building the canned Gemini answers (whole or as stream events) and embeddings.

No I/O here: ``sandbox.vertex`` (the HTTP server) sends what these functions return. Replies come from
``sandbox.provider``'s directive and reply logic, plus ``tool=<name>``, which answers with a functionCall.
Models named ``gemini-3*`` sign their function calls and refuse them back unsigned, as Gemini 3 does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from sandbox.provider import make_reply, parse_directive, read_prompt
from sandbox.provider_directives import find_directives

# Vertex rejects unknown JSON fields with 400; so does the stand-in, to catch translation slips.
_REQUEST_KEYS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
                 "labels", "cachedContent"}
_GENERATION_KEYS = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences",
                    "presencePenalty", "frequencyPenalty", "seed", "responseMimeType", "responseSchema",
                    "responseLogprobs", "logprobs", "thinkingConfig"}
_PART_KEYS = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature"}
# Gemini 3 models sign each step's function calls and want the signature back with the call.
# The stand-in's signatures start with bytes whose base64 is "++++////", so a client that
# does not hand them back exactly as issued (standard alphabet, padded) is caught.
_SIGNATURE_PREFIX = b"\xfb\xef\xbe\xff\xff\xff"
MISSING_SIGNATURE = ("Function call is missing a thought_signature in functionCall parts. This is required "
                     "for tools to work correctly.")


def signs_calls(model: str) -> bool:
    return model.startswith("gemini-3")


def thought_signature(response_id: str, name: str) -> str:
    return base64.b64encode(_SIGNATURE_PREFIX + hashlib.sha256(f"{response_id}:{name}".encode()).digest()[:14]).decode()


def _signed(part: dict) -> bool:
    try:
        return base64.b64decode(part.get("thoughtSignature") or "", validate=True).startswith(_SIGNATURE_PREFIX)
    except (binascii.Error, ValueError):
        return False


def take_tool(text: str) -> tuple[str, str | None]:
    """Remove ``tool=<name>`` (and ``args=``, which this stand-in does not use) from directives: a Gemini
    function call is built here, not by sandbox.provider."""
    found: list[str] = []
    parts, last = [], 0
    for start, end, items in find_directives(text):
        found += [value for _, key, value in items if key == "tool" and value]
        kept = [item for item, key, _ in items if key not in ("tool", "args")]
        parts += [text[last:start], f"[[sandbox {' '.join(kept)}]]" if kept else " "]
        last = end
    return "".join(parts) + text[last:], (found[-1] if found else None)


def _texts(content: dict) -> str:
    return " ".join(p["text"] for p in content.get("parts") or []
                    if isinstance(p.get("text"), str) and not p.get("thought"))


def read_gemini(body: dict, model: str = "") -> dict:
    """Validate a generateContent body; return what the answer depends on. ValueError on bad input."""
    unknown = [key for key in body if key not in _REQUEST_KEYS]
    gen = body.get("generationConfig") or {}
    if not isinstance(gen, dict):
        raise ValueError("generationConfig must be an object")
    unknown += [f"generation_config.{key}" for key in gen if key not in _GENERATION_KEYS]
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise ValueError("contents must be a non-empty list")
    for c in contents:
        if not isinstance(c, dict) or c.get("role") not in ("user", "model"):
            raise ValueError("every content needs role 'user' or 'model'")
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            raise ValueError("contents.parts must be a non-empty list of objects")
        unknown += [f"parts.{key}" for p in parts for key in p if key not in _PART_KEYS]
        if any(p.get("text") == "" for p in parts):
            raise ValueError("Unable to submit request because it has an empty text parameter.")
        calls = [p for p in parts if "functionCall" in p]
        if c["role"] == "model" and calls and signs_calls(model) and not _signed(calls[0]):
            raise ValueError(MISSING_SIGNATURE)  # the first call of each step carries it
    if unknown:
        raise ValueError(f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.')
    messages = [{"role": "user" if c["role"] == "user" else "assistant", "content": take_tool(_texts(c))[0]}
                for c in contents]
    last_user = next((c for c in reversed(contents) if c["role"] == "user"), {"parts": []})
    tool = take_tool(_texts(last_user))[1]
    # A tool result in the last user turn is what the reply is about (a tool round trip).
    results = [p["functionResponse"] for p in last_user["parts"] if isinstance(p.get("functionResponse"), dict)]
    system = _texts(body.get("systemInstruction") or {})
    text, opts, prompt_tokens = read_prompt(messages, take_tool(system)[0])
    limit = gen.get("maxOutputTokens")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError("maxOutputTokens must be a positive integer")
    stops = gen.get("stopSequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ValueError("stopSequences must be a list of strings")
    tool_said = str((results[-1].get("response") or {}).get("content")) if results else None
    return {"text": text, "opts": opts, "prompt_tokens": prompt_tokens, "limit": limit, "stops": stops,
            "tool": tool, "tool_said": tool_said}


def gemini_responses(prompt: dict, model: str, response_id: str, *, stream: bool) -> list[dict]:
    """The answer to a ``read_gemini`` prompt: one GenerateContentResponse, or one per word when streamed."""
    if prompt["tool"] and prompt["tool_said"] is None:
        parts = [{"functionCall": {"name": prompt["tool"], "args": {"query": prompt["text"]}}}]
        if signs_calls(model):
            parts[0]["thoughtSignature"] = thought_signature(response_id, prompt["tool"])
        pieces, finish, completion = [parts], "STOP", 1 + len(prompt["text"].split())
    else:
        said = f"tool said {prompt['tool_said']}" if prompt["tool_said"] is not None else prompt["text"]
        reply, end, _ = make_reply(said, prompt["limit"], prompt["stops"])
        finish, completion = ("MAX_TOKENS" if end == "length" else "STOP"), len(reply.split())
        parts = [{"text": reply}]
        pieces = [[{"text": piece}] for piece in re.findall(r"\S+\s*", reply)] or [parts]
    usage = {"promptTokenCount": prompt["prompt_tokens"], "candidatesTokenCount": completion,
             "totalTokenCount": prompt["prompt_tokens"] + completion}

    def response(parts: list, last: bool) -> dict:
        candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
        out = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
        if last:  # only the final event says why it stopped and what it cost
            candidate["finishReason"] = finish
            out["usageMetadata"] = usage
        return out

    if not stream:
        return [response(parts, True)]
    return [response(piece, i == len(pieces) - 1) for i, piece in enumerate(pieces)]


def vector(text: str, dims: int) -> list[float]:
    """Deterministic floats in [-1, 1) from the text."""
    return [round(int.from_bytes(hashlib.sha256(f"{i}:{text}".encode()).digest()[:4], "big") / 2**31 - 1, 6)
            for i in range(dims)]


def embedding_predictions(body: dict) -> tuple[list[dict], dict]:
    """Validate a ``:predict`` body; return (predictions, directive options). ValueError on bad input."""
    instances = body.get("instances")
    params = body.get("parameters") or {}
    dims = params.get("outputDimensionality", 8) if isinstance(params, dict) else None
    if not isinstance(instances, list) or not instances or not all(
            isinstance(i, dict) and isinstance(i.get("content"), str) for i in instances):
        raise ValueError("instances must be a non-empty list of {content: string}")
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 3072:
        raise ValueError("parameters.outputDimensionality must be an integer in 1..3072")
    predictions, opts = [], {}
    for instance in instances:
        text, found = parse_directive(instance["content"])
        opts.update(found)
        predictions.append({"embeddings": {"values": vector(text, dims),
                                           "statistics": {"token_count": len(text.split()), "truncated": False}}})
    return predictions, opts
