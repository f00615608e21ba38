"""What the Responses translation needs in both directions: tool names, sealed thinking, item ids.

A Responses request's tools become chat functions; the answer's tool calls must
come back as the item types and names the client sent (``custom_tool_call`` for a
``custom`` tool, a ``function_call`` with its ``namespace`` for a namespaced one),
since Codex dispatches on them (codex-rs core/src/tools/router.rs, build_tool_call:
``ToolName::new(namespace, name)`` for a function_call, ``ToolName::plain(name)``
for a custom_tool_call). ``ToolNames`` keeps that mapping.

Thinking travels in a reasoning item's ``encrypted_content``, which clients send
back verbatim (with ``store: false`` that is the only way reasoning survives a
turn; openai-python types/responses/response_reasoning_item.py). ``seal`` wraps the
pivot's ``thinking_blocks`` so that ``unseal`` recognises them on the way back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field

from shared.errors import InvalidRequest
from workers.translate import reasoning

# Chat function names every target accepts: OpenAI and Anthropic allow ^[a-zA-Z0-9_-]{1,64}$
# (anthropic-sdk-python types/tool_param.py, "name"); Gemini wants a letter or underscore first.
_SAFE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")
NAMESPACE_SEPARATOR = "__"  # <namespace>__<name>, as Codex itself flattens MCP tool names


@dataclass(frozen=True)
class ResponsesTool:
    """The Responses tool a chat function stands for."""

    kind: str  # "function" or "custom"
    name: str
    namespace: str | None = None


@dataclass
class ToolNames:
    """Chat function name <-> Responses tool, for one request."""

    by_chat_name: dict[str, ResponsesTool] = field(default_factory=dict)

    def chat_name(self, name: str, namespace: str | None = None, kind: str = "function") -> str:
        """The chat function name for a Responses tool, allotting one if it is new."""
        for chat_name, tool in self.by_chat_name.items():
            if tool.name == name and tool.namespace == namespace:
                return chat_name
        chat_name = name if namespace is None else f"{namespace}{NAMESPACE_SEPARATOR}{name}"
        if namespace is not None and not _SAFE_NAME.match(chat_name):
            chat_name = _shortened(chat_name)
        while chat_name in self.by_chat_name:  # a plain tool may already have the flattened name
            chat_name = _shortened(chat_name + "'")
        self.by_chat_name[chat_name] = ResponsesTool(kind, name, namespace)
        return chat_name

    def tool(self, chat_name: str) -> ResponsesTool:
        """The Responses tool behind a chat function name (an unknown name is a plain function)."""
        return self.by_chat_name.get(chat_name) or ResponsesTool("function", chat_name)


def _shortened(name: str) -> str:
    """A safe name that stays recognisable: the readable part, then a digest of the whole."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:53].lstrip("-0123456789") or "t"
    return f"{readable}_{digest}"


# --- thinking sealed into encrypted_content ---------------------------------------------------------

_SEAL = "aigw-thinking-v1:"


def seal(blocks: list[dict]) -> str | None:
    """The pivot's thinking blocks as an opaque ``encrypted_content`` string (None when there are none)."""
    if not blocks:
        return None
    payload = json.dumps(blocks, separators=(",", ":"), ensure_ascii=False).encode()
    return _SEAL + base64.urlsafe_b64encode(payload).decode()


def unseal(value: object) -> list[dict] | None:
    """Thinking blocks sealed by ``seal``; None for anything else (another provider's reasoning)."""
    if not isinstance(value, str) or not value.startswith(_SEAL):
        return None
    try:
        blocks = json.loads(base64.urlsafe_b64decode(value[len(_SEAL):].encode()))
        return reasoning.thinking_blocks(blocks, "encrypted_content")
    except (binascii.Error, ValueError, InvalidRequest):  # damaged: not something we can replay
        return None


# --- item ids --------------------------------------------------------------------------------------

def item_id(prefix: str, response_id: str, output_index: int) -> str:
    """A stable id for an output item: its kind's prefix (msg, rs, fc, ctc), its response, its place."""
    return f"{prefix}_{response_id.removeprefix('resp_')}_{output_index}"
