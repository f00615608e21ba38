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

from sandbox import provider_script as script
from sandbox.provider_directives import INT_KEYS, MAX_WORDS, TOOL_NAME_RE, parse_directive, strip_directives
from sandbox.provider_stream import Answer

__all__ = [
    "EMBEDDING_DIMENSIONS", "INT_KEYS", "MAX_DIMENSIONS", "MAX_WORDS", "MID_CONVERSATION_SYSTEM_BETA", "TOOL_NAME_RE",
    "RequestError", "anthropic_betas", "chat_answer", "check_anthropic_roles",
    "completion_answer", "count_tokens", "cut_reply", "embed", "embedding_texts", "embeddings_payload", "make_reply",
    "parse_directive", "read_prompt", "repeat_words", "strip_directives", "text_of", "tool_results",
]

EMBEDDING_DIMENSIONS = 8
MAX_DIMENSIONS = 4096


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


# Instructions between turns are not turns: Claude Code puts a `system` message after a tool result
# (NOTES.md, "Real clients"), and OpenAI accepts system and developer messages anywhere.
INSTRUCTION_ROLES = ("system", "developer")


def tool_results(messages: list) -> str | None:
    """Text of the tool results the newest turn carries, or None when it is not a tool result turn.

    OpenAI: the `tool` messages at the end; Anthropic: the `tool_result` blocks of the last message.
    """
    found: list[str] = []
    for message in reversed(messages):
        if message.get("role") in INSTRUCTION_ROLES:
            continue
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
    prompt_tokens = sum(len(strip_directives(t).split()) for t in texts)
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


class RequestError(ValueError):
    """A refusal that names what OpenAI names: the parameter, and an error code."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400):
        super().__init__(message)
        self.param, self.code, self.status = param, code, status


# The beta that admitted a `role: "system"` message inside `messages` (anthropic-sdk-python
# types/beta/beta_message_param.py admits the role only in the beta API). Anthropic has since made such
# messages generally available on current models, and Claude Code 2.1.332 sends no beta for them
# (tests/clients/TRAFFIC.md): the sandbox asks for the beta only from model ids it treats as older.
MID_CONVERSATION_SYSTEM_BETA = "mid-conversation-system-2026-04-07"
# Model ids (prefixes) taking a mid-conversation system message without a beta: Claude Opus 4.8 (Anthropic's
# docs, build-with-claude/mid-conversation-system-messages) and the ids Claude Code asks for (its default
# claude-opus-5-5; claude-sonnet-4-5). Any other id (the tests' claude-upstream) needs the beta header, so a
# test proves that header reached the provider.
SYSTEM_MESSAGES_GA = ("claude-opus-5", "claude-opus-4-8", "claude-sonnet-4-5")


def anthropic_betas(values) -> frozenset[str]:
    """The betas of the `anthropic-beta` headers: comma-separated, and the header may repeat
    (docs.claude.com/en/api/beta-headers)."""
    return frozenset(beta.strip() for value in values or () for beta in value.split(",") if beta.strip())


def check_anthropic_roles(messages, betas: frozenset[str], model=None) -> None:
    """Refuse a role Anthropic refuses, in its words.

    Anthropic's 400 for a message role other than user/assistant reads "messages.N.role: Input should be
    'user' or 'assistant'" (reported by Claude Code users behind gateways that dropped the beta header).
    Its docs (build-with-claude/mid-conversation-system-messages) say Claude Opus 4.8 takes a `system`
    message without a header; the sandbox admits one for the ``model`` ids of SYSTEM_MESSAGES_GA, and for
    any other only when the header names the beta, so a test proves the header reached the provider.
    """
    if not isinstance(messages, list):
        return  # read_prompt refuses it
    system_ok = MID_CONVERSATION_SYSTEM_BETA in betas or (
        isinstance(model, str) and model.startswith(SYSTEM_MESSAGES_GA))
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("user", "assistant") or (role == "system" and system_ok):
            continue
        raise ValueError(f"messages.{index}.role: Input should be 'user' or 'assistant'")


# OpenAI chat's roles, and its refusal of another, in the shape of its enum refusals (message, param
# messages[N].role, code: as quoted in e.g. TheR1D/shell_gpt#717); the order is OpenAI's message's.
OPENAI_ROLES = ("system", "assistant", "user", "function", "tool", "developer")


def check_openai_roles(messages) -> None:
    if not isinstance(messages, list):
        return  # read_prompt refuses it
    for index, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if isinstance(message, dict) and role not in OPENAI_ROLES:
            supported = ", ".join(f"'{r}'" for r in OPENAI_ROLES[:-1]) + f", and '{OPENAI_ROLES[-1]}'"
            raise RequestError(f"Invalid value: {role!r}. Supported values are: {supported}.",
                               param=f"messages[{index}].role", code="invalid_value")


# An upstream model id ending in -ctx<N> (say small-ctx8) stands for a model whose context window is N
# tokens: a longer prompt is refused as the provider refuses it, so a test can exercise a context-window
# fallback with the same message reaching a small and a large model.
CONTEXT_WINDOW_ID = re.compile(r"-ctx(\d{1,9})$")


def check_context_window(api: str, model, prompt_tokens: int) -> None:
    """Refuse a prompt longer than the model id's context window with the provider's own error:
    OpenAI's 400 ``context_length_exceeded`` ("This model's maximum context length is N tokens. However,
    your messages resulted in M tokens. ...", param ``messages``), Anthropic's 400 invalid_request_error
    "prompt is too long: M tokens > N maximum" (both as their APIs answer them, quoted verbatim in
    chathub-dev/chathub#126 and anthropics/claude-code#59696)."""
    found = CONTEXT_WINDOW_ID.search(model) if isinstance(model, str) else None
    if found is None or prompt_tokens <= int(found.group(1)):
        return
    window = int(found.group(1))
    if api == "anthropic":
        raise RequestError(f"prompt is too long: {prompt_tokens} tokens > {window} maximum")
    raise RequestError(f"This model's maximum context length is {window} tokens. However, your messages "
                       f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
                       param="messages", code="context_length_exceeded")


def chat_answer(api: str, body: dict, digest: str, betas: frozenset[str] = frozenset()) -> tuple[Answer, dict]:
    """The answer to a chat call (OpenAI chat completions or Anthropic messages) and its directive."""
    shown = True
    if api == "anthropic":
        limit = _positive_int(body.get("max_tokens"), "max_tokens", required=True)
        stops = _stop_list(body.get("stop_sequences"), "stop_sequences")
        check_anthropic_roles(body.get("messages"), betas, body.get("model"))
        text, opts, prompt_tokens = read_prompt(body.get("messages"), body.get("system"))
        check_context_window(api, body.get("model"), prompt_tokens)
        answer = Answer(f"msg_sbx_{digest[:24]}", body.get("model"), prompt_tokens, 0)
        tool_id = f"toolu_sbx_{digest[:24]}"
        label, shown = script.anthropic_thinking(body)
    else:
        limit = body.get("max_completion_tokens")
        limit = _positive_int(body.get("max_tokens") if limit is None else limit, "max_tokens")
        stops = _stop_list(body.get("stop"), "stop")
        check_openai_roles(body.get("messages"))
        text, opts, prompt_tokens = read_prompt(body.get("messages"))
        check_context_window(api, body.get("model"), prompt_tokens)
        answer = Answer(f"chatcmpl-sbx-{digest[:12]}", body.get("model"), prompt_tokens, 0, created=int(time.time()))
        tool_id = f"call_sbx_{digest[:24]}"
        label = script.openai_effort(body.get("reasoning_effort"))
    results = tool_results(body["messages"])
    subject = text if results is None else " ".join(f"tool said {results}".split())
    if label is not None:
        answer.think(script.thought(label, subject), shown)
    tool = None
    if results is None and "tool" in opts and script.tools_allowed(body.get("tool_choice")):
        tool = script.find_tool(api, body.get("tools"), opts["tool"])
    if tool is not None:
        # A tool call ignores max_tokens and stop: its arguments must stay valid JSON.
        answer.call(tool_id, tool, script.tool_arguments(tool, opts, text))
        return answer, opts
    answer.text, answer.finish, answer.stop = make_reply(
        repeat_words(subject, opts["words"]) if "words" in opts and results is None else subject, limit, stops)
    answer.completion_tokens = len(answer.text.split()) + answer.reasoning_tokens
    return answer, opts


def count_tokens(body: dict, betas: frozenset[str] = frozenset()) -> tuple[dict, dict]:
    """Anthropic's POST /v1/messages/count_tokens: {"input_tokens": N} (types/message_tokens_count.py).

    N is what /v1/messages reports as input tokens for the same system and messages, plus the tools:
    each tool counts the words of its JSON (sorted keys), so adding a tool always adds tokens.
    """
    check_anthropic_roles(body.get("messages"), betas, body.get("model"))
    _, opts, prompt_tokens = read_prompt(body.get("messages"), body.get("system"))
    tools = script.tool_list(body.get("tools"))
    tool_tokens = sum(len(json.dumps(tool, sort_keys=True).split()) for tool in tools)
    return {"input_tokens": prompt_tokens + tool_tokens}, opts


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
