"""Pure request -> answer logic of the sandbox provider: directives, prompts, replies, tool calls, embeddings.

No I/O here: ``sandbox.provider`` (the HTTP server, which re-exports these names) turns a parsed request
body into an ``Answer`` (see ``sandbox.provider_stream``) or an embeddings payload with these functions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import time

from sandbox.provider_stream import Answer

DIRECTIVE_RE = re.compile(r"\[\[sandbox\b([^\]]*)\]\]")
TOOL_NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
INT_KEYS = ("times", "delay_ms", "chunk_delay_ms", "silence_ms", "fail_after", "error_after", "words")
MAX_WORDS = 1_000_000  # `words=N`: a long answer, never one that exhausts the sandbox's memory
EMBEDDING_DIMENSIONS = 8
MAX_DIMENSIONS = 4096


def parse_directive(text: str) -> tuple[str, dict]:
    """Return (text with directives removed and whitespace collapsed, directive options)."""
    opts: dict = {}
    for match in DIRECTIVE_RE.finditer(text):
        for item in match.group(1).split():
            key, has_value, value = item.partition("=")
            if key in ("hang", "close") and not has_value:
                opts[key] = True
            elif key == "fail" and value.isdigit() and 400 <= int(value) <= 599:
                opts[key] = int(value)
            elif key == "words" and value.isdigit() and 1 <= int(value) <= MAX_WORDS:
                opts[key] = int(value)
            elif key in INT_KEYS and key != "words" and value.isdigit():
                opts[key] = int(value)
            elif key == "tool" and TOOL_NAME_RE.fullmatch(value):
                opts[key] = value
            elif key == "retry_after" and value.isdigit():
                opts[key] = value
            else:
                raise ValueError(f"bad sandbox directive item {item!r}")
    return " ".join(DIRECTIVE_RE.sub(" ", text).split()), opts


def text_of(content) -> str:
    """Text of a message content / system field: a string, or a list whose `text` parts count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"] for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    raise ValueError("content must be a string or a list of content parts")


def _tool_result_texts(content) -> list[str]:
    """Texts of the Anthropic `tool_result` blocks in a message content."""
    if not isinstance(content, list):
        return []
    return [text_of(block.get("content")) for block in content
            if isinstance(block, dict) and block.get("type") == "tool_result"]


def tool_results(messages: list) -> str | None:
    """Text of the tool results the newest turn carries, or None when it is not a tool result turn.

    OpenAI: the `tool` messages at the end; Anthropic: the `tool_result` blocks of the last message.
    """
    found: list[str] = []
    for message in reversed(messages):
        if message.get("role") == "tool":
            found.insert(0, text_of(message.get("content")))
            continue
        if not found and message.get("role") == "user":
            found = _tool_result_texts(message.get("content"))
        break
    return " ".join(" ".join(found).split()) if found else None


def read_prompt(messages, system=None) -> tuple[str, dict, int]:
    """Return (cleaned last user text, directive options, prompt tokens)."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError("'messages' must be a list of message objects")
    texts = [text_of(system)] + [text_of(m.get("content")) for m in messages]
    texts += [text for m in messages for text in _tool_result_texts(m.get("content"))]
    last_user = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    cleaned, opts = parse_directive(last_user)
    prompt_tokens = sum(len(DIRECTIVE_RE.sub(" ", t).split()) for t in texts)
    return cleaned, opts, prompt_tokens


def repeat_words(text: str, count: int) -> str:
    """`text`'s words over and over until there are `count` of them ("word" for an empty text)."""
    words = text.split() or ["word"]
    return " ".join(words[i % len(words)] for i in range(count))


def make_reply(text: str, max_tokens: int | None, stops: list[str]) -> tuple[str, str, str | None]:
    """Return (reply, finish, matched stop); finish is "end", "length" or "stop_sequence"."""
    return cut_reply("Sandbox reply: " + text, max_tokens, stops)


def cut_reply(reply: str, max_tokens: int | None, stops: list[str]) -> tuple[str, str, str | None]:
    """Apply the stop sequences and the token limit to a full reply, like make_reply."""
    cut, matched = None, None
    for stop in stops:
        index = reply.find(stop) if stop else -1
        if index >= 0 and (cut is None or index < cut):
            cut, matched = index, stop
    if cut is not None:
        reply = reply[:cut]
    words = reply.split()
    # The stop sequence and the token limit race like in a real model: whichever comes first wins.
    if max_tokens is not None and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length", None
    return reply, ("stop_sequence" if matched is not None else "end"), matched


def _positive_int(value, name: str, required: bool = False) -> int | None:
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive integer")
    return value


def _stop_list(value, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise ValueError(f"'{name}' must be a string or a list of strings")


def _has_tool(tools, name: str) -> bool:
    if tools is None:
        return False
    if not isinstance(tools, list):
        raise ValueError("'tools' must be a list")
    for tool in tools:
        if isinstance(tool, dict):
            function = tool.get("function")
            if (function.get("name") if isinstance(function, dict) else tool.get("name")) == name:
                return True
    return False


def chat_answer(api: str, body: dict, digest: str) -> tuple[Answer, dict]:
    """The answer to a chat call (OpenAI chat completions or Anthropic messages) and its directive."""
    if api == "anthropic":
        limit = _positive_int(body.get("max_tokens"), "max_tokens", required=True)
        stops = _stop_list(body.get("stop_sequences"), "stop_sequences")
        text, opts, prompt_tokens = read_prompt(body.get("messages"), body.get("system"))
        answer = Answer(f"msg_sbx_{digest[:24]}", body.get("model"), prompt_tokens, 0)
        tool_id = f"toolu_sbx_{digest[:24]}"
    else:
        limit = body.get("max_completion_tokens")
        limit = _positive_int(body.get("max_tokens") if limit is None else limit, "max_tokens")
        stops = _stop_list(body.get("stop"), "stop")
        text, opts, prompt_tokens = read_prompt(body.get("messages"))
        answer = Answer(f"chatcmpl-sbx-{digest[:12]}", body.get("model"), prompt_tokens, 0, created=int(time.time()))
        tool_id = f"call_sbx_{digest[:24]}"
    results = tool_results(body["messages"])
    if results is None and "tool" in opts and _has_tool(body.get("tools"), opts["tool"]):
        # A tool call ignores max_tokens and stop: its arguments must stay valid JSON.
        answer.tool_id, answer.tool_name, answer.finish = tool_id, opts["tool"], "tool"
        answer.arguments = json.dumps({"query": text})
        answer.completion_tokens = len(answer.arguments.split())
        return answer, opts
    if results is not None:
        text = " ".join(f"tool said {results}".split())
    elif "words" in opts:
        text = repeat_words(text, opts["words"])
    answer.text, answer.finish, answer.stop = make_reply(text, limit, stops)
    answer.completion_tokens = len(answer.text.split())
    return answer, opts


def completion_answer(body: dict, digest: str) -> tuple[Answer, dict]:
    """The answer to a legacy completion call: the end of the prompt, and the start of the suffix."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(part, str) for part in prompt):
        prompt = " ".join(prompt)  # a batch of prompts is answered as one prompt
    if not isinstance(prompt, str):
        raise ValueError("'prompt' must be a string or a list of strings")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise ValueError("'suffix' must be a string")
    limit = _positive_int(body.get("max_tokens"), "max_tokens")
    stops = _stop_list(body.get("stop"), "stop")
    cleaned, opts = parse_directive(prompt)
    words = cleaned.split()
    completion = "Sandbox completion of: " + " ".join(words[-5:])
    if suffix:
        completion += " [before: " + " ".join(suffix.split()[:3]) + "]"
    prompt_tokens = len(words) + len((suffix or "").split())
    answer = Answer(f"cmpl-sbx-{digest[:12]}", body.get("model"), prompt_tokens, 0, created=int(time.time()))
    answer.text, answer.finish, answer.stop = cut_reply(completion, limit, stops)
    answer.completion_tokens = len(answer.text.split())
    return answer, opts


def _token_ids(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value)


def embedding_texts(value) -> list[str]:
    """The texts to embed; a token id array counts as its ids joined by spaces."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return value
        if _token_ids(value):
            return [" ".join(map(str, value))]
        if all(_token_ids(v) for v in value):
            return [" ".join(map(str, v)) for v in value]
    raise ValueError("'input' must be a string, a list of strings, a token id list or a list of token id lists")


def embed(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """Deterministic vector for `text`: sha256 read as little-endian int32s scaled into [-1, 1].

    The first 8 values come from sha256(text), the next 8 from sha256("1:" + text) and so on; every
    value is exactly representable as a float32, so the base64 form decodes to the same numbers.
    """
    values: list[float] = []
    block = 0
    while len(values) < dimensions:
        seed = text if block == 0 else f"{block}:{text}"
        values += [n / 2**31 for n in struct.unpack("<8i", hashlib.sha256(seed.encode()).digest())]
        block += 1
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *values[:dimensions])))


def embeddings_payload(body: dict) -> tuple[dict, dict]:
    """The embeddings answer and the directive options found in the inputs."""
    texts = embedding_texts(body.get("input"))
    dimensions = _positive_int(body.get("dimensions"), "dimensions") or EMBEDDING_DIMENSIONS
    if dimensions > MAX_DIMENSIONS:
        raise ValueError(f"'dimensions' must be at most {MAX_DIMENSIONS}")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ValueError("'encoding_format' must be 'float' or 'base64'")
    opts: dict = {}
    data, tokens = [], 0
    for index, text in enumerate(texts):
        cleaned, found = parse_directive(text)
        opts.update(found)
        tokens += len(cleaned.split())
        vector = embed(cleaned, dimensions)
        if encoding == "base64":
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return {"object": "list", "data": data, "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}, opts
