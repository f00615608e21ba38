"""What a GitLab Duo request asks of the model, as an ordinary job: an OpenAI chat completion or a
legacy completion (fill-in-the-middle), so the worker's path, retries, streams and metrics are the
ones every request has. The prompt is built here from GitLab's fields (``shared.duo_prompts``, with the
model's ``duo.prompts`` overrides); nothing GitLab sends about the model (its endpoint, its API key)
reaches the job.

The bodies GitLab sends are those of ../shared/duo-protocol.md 3.1-3.5 (read in GitLab's Rails
source); like GitLab's own AI gateway (pydantic models), unknown fields are ignored and a missing or
mistyped field the prompt needs is a 422.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from api.duo.models import DuoInvalid
from shared import duo_prompts as prompts
from shared.config import ModelConfig
from shared.config_types import DuoModelPrompts
from shared.jobs import CHAT_COMPLETIONS, COMPLETIONS

# The model types that speak OpenAI's /v1/completions, where a FIM prompt can go as it is.
FIM_TYPES = ("openai", "generic")
CHAT_COMPLETION_MAX_TOKENS = 128  # GitLab's AI gateway's completions/base definition
GENERATION_MAX_TOKENS = 2048  # its generations/base definition
MAX_TEXT = 1_000_000  # of any one text field: GitLab trims the file's content to 100,000 characters each side


@dataclass(frozen=True)
class Job:
    endpoint: str  # shared.jobs: COMPLETIONS or CHAT_COMPLETIONS
    body: dict  # the OpenAI request, its "model" the configured model's name


def _text(value, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise DuoInvalid(f"{where}: a string is required.", param=where)
    return value


def _object(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise DuoInvalid(f"{where}: an object is required.", param=where)
    return value


def stream_flag(body: dict) -> bool:
    value = body.get("stream", False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise DuoInvalid("stream: true or false is required.", param="stream")
    return value


def _chat(model: ModelConfig, messages: list[dict], *, stream: bool, max_tokens: int | None = None,
          temperature: float | None = None) -> Job:
    body: dict = {"model": model.name, "messages": messages, "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    if stream:
        body["stream_options"] = {"include_usage": True}
    return Job(CHAT_COMPLETIONS, body)


def _template(overrides: DuoModelPrompts, name: str) -> str:
    return overrides.templates.get(name) or prompts.TEMPLATES[name][0]


# -- code completion: POST /v2/code/completions ---------------------------------------------------------
def completion(body: dict, model: ModelConfig, overrides: DuoModelPrompts) -> Job:
    """Fill-in-the-middle where the model takes it (an openai or generic model of a FIM family, by the
    config's ``family`` or GitLab's ``model_name``; GitLab 17.x's own ``prompt`` for it is used as
    sent), else the chat completion prompt."""
    current = _object(body.get("current_file"), "current_file")
    values = {"prefix": _text(current.get("content_above_cursor"), "current_file.content_above_cursor"),
              "suffix": _text(current.get("content_below_cursor"), "current_file.content_below_cursor",
                              required=False),
              "file_name": _text(current.get("file_name"), "current_file.file_name")}
    values["language"] = prompts.language_of(values["file_name"])
    stream = stream_flag(body)
    family = overrides.family or prompts.fim_family(body.get("model_name"))
    if model.type in FIM_TYPES and (family or overrides.fim_suffix or "fim" in overrides.templates):
        fim = prompts.FIM_FAMILIES.get(family or "", prompts.FimFamily(""))
        request: dict = {"model": model.name, "max_tokens": fim.max_tokens, "stream": stream}
        sent = body.get("prompt")
        if overrides.fim_suffix:  # the server applies the model's own FIM template
            request.update(prompt=values["prefix"], suffix=values["suffix"])
        elif "fim" in overrides.templates:
            request["prompt"] = prompts.render(overrides.templates["fim"], values)
        elif isinstance(sent, str) and sent and len(sent) <= MAX_TEXT:
            request["prompt"] = sent  # 17.x: GitLab built the family's prompt itself
        else:
            request["prompt"] = prompts.render(fim.template, values)
        if fim.stop:
            request["stop"] = list(fim.stop)
        if fim.temperature is not None:
            request["temperature"] = fim.temperature
        if stream:
            request["stream_options"] = {"include_usage": True}
        return Job(COMPLETIONS, request)
    messages = [{"role": "system", "content": prompts.render(_template(overrides, "completion_system"), values)},
                {"role": "user", "content": prompts.render(_template(overrides, "completion_user"), values)}]
    return _chat(model, messages, stream=stream, max_tokens=CHAT_COMPLETION_MAX_TOKENS)


# -- code generation: POST /v3/code/completions, /v4/code/suggestions -----------------------------------
def generation(body: dict, model: ModelConfig, overrides: DuoModelPrompts) -> Job:
    """From the ``code_editor_generation`` prompt component GitLab sends (the file around the cursor,
    the instruction, related files, snippets and libraries), else from ``current_file``."""
    components = body.get("prompt_components")
    if components is not None and not isinstance(components, list):
        raise DuoInvalid("prompt_components: a list is required.", param="prompt_components")
    payload: dict = {}
    if components:
        payload = next((c.get("payload") for c in components if isinstance(c, dict)
                        and c.get("type") == "code_editor_generation" and isinstance(c.get("payload"), dict)), {})
    current = body.get("current_file") if body.get("current_file") is not None else {}
    current = _object(current, "current_file")
    source = payload or current
    if not source:
        raise DuoInvalid("prompt_components: a code_editor_generation component (or current_file) is required.",
                         param="prompt_components")
    enhancer = payload.get("prompt_enhancer") if isinstance(payload.get("prompt_enhancer"), dict) else {}
    instruction = enhancer.get("user_instruction") or body.get("user_instruction") or ""
    values = {"prefix": _text(source.get("content_above_cursor"), "content_above_cursor"),
              "suffix": _text(source.get("content_below_cursor"), "content_below_cursor", required=False),
              "file_name": _text(source.get("file_name"), "file_name"),
              "instruction": instruction if isinstance(instruction, str) and instruction.strip()
              else prompts.GENERATION_DEFAULT_INSTRUCTION}
    values["language"] = (payload.get("language_identifier") if isinstance(payload.get("language_identifier"), str)
                          else "") or prompts.language_of(values["file_name"])
    values["related"] = _related(enhancer, body)
    messages = [{"role": "system", "content": prompts.render(_template(overrides, "generation_system"), values)},
                {"role": "user", "content": prompts.render(_template(overrides, "generation_user"), values)}]
    return _chat(model, messages, stream=stream_flag(body), max_tokens=GENERATION_MAX_TOKENS, temperature=0.2)


def _related(enhancer: dict, body: dict) -> str:
    """Related files and snippets (already wrapped in tags by GitLab) and the project's libraries."""
    parts = []
    files = [f for f in enhancer.get("related_files") or [] if isinstance(f, str)]
    snippets = [s for s in enhancer.get("related_snippets") or [] if isinstance(s, str)]
    for item in body.get("context") or []:  # the IDE's context items, 17.x/18.x passthrough
        if isinstance(item, dict) and isinstance(item.get("content"), str):
            kind = "snippet_content" if item.get("type") == "snippet" else "file_content"
            name = str(item.get("name") or "")
            (snippets if kind == "snippet_content" else files).append(
                f'<{kind} name="{name}">\n{item["content"]}\n</{kind}>\n')
    if files:
        parts.append("Here are some files from the project that are related to the file above:\n<related_files>\n"
                     + "".join(files) + "</related_files>\n\n")
    if snippets:
        parts.append("Here are some code snippets that are related:\n<related_snippets>\n" + "".join(snippets)
                     + "</related_snippets>\n\n")
    libraries = [lib for lib in enhancer.get("libraries") or [] if isinstance(lib, str)]
    if libraries:
        parts.append("The project uses these libraries:\n<libs>\n" + "\n".join(libraries) + "\n</libs>\n\n")
    return "".join(parts)


# -- Duo Chat: POST /v2/chat/agent ---------------------------------------------------------------------------
def chat(body: dict, model: ModelConfig, overrides: DuoModelPrompts) -> Job:
    """The conversation: GitLab's history, then the newest question with the page, the file and the
    additional context it comes with. Tool steps (``agent_scratchpad``) are never asked for, since the
    answers are final (``final_answer_delta``), so they are left out. Always streamed."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise DuoInvalid("messages: a non-empty list of messages is required.", param="messages")
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=None)
    if last_user is None:
        raise DuoInvalid("messages: a user message is required.", param="messages")
    unavailable = body.get("unavailable_resources")
    system = prompts.render(_template(overrides, "chat_system"), {
        "unavailable_resources": ", ".join(r for r in unavailable if isinstance(r, str))
        if isinstance(unavailable, list) else ""})
    turns = [{"role": "system", "content": system}]
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str) or not content:
            continue
        if index == last_user:
            content = prompts.render(_template(overrides, "chat_user"), {
                "content": content, "context": _page(message.get("context")),
                "current_file": _current_file(message.get("current_file")),
                "additional_context": _additional(message.get("additional_context"))})
        turns.append({"role": role, "content": content})
    return _chat(model, turns, stream=True)


def _page(context) -> str:
    """The GitLab page the user is on: {type, title} (18.x) or {type, content} (older)."""
    if not isinstance(context, dict) or not isinstance(context.get("type"), str):
        return ""
    detail = context.get("title") if isinstance(context.get("title"), str) else context.get("content")
    if not isinstance(detail, str) or not detail:
        return ""
    kind = context["type"].replace("_", " ")
    return f"The user is viewing this {kind}:\n<{context['type']}>\n{detail}\n</{context['type']}>\n\n"


def _current_file(current) -> str:
    if not isinstance(current, dict) or not isinstance(current.get("data"), str) or not current["data"]:
        return ""
    path = current.get("file_path") if isinstance(current.get("file_path"), str) else ""
    what = "selected this code in" if current.get("selected_code") else "has this file open:"
    return f'The user {what} {path}\n<file path="{path}">\n{current["data"]}\n</file>\n\n'


def _additional(items) -> str:
    if not isinstance(items, list):
        return ""
    parts = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("content"), str):
            category = str(item.get("category") or "context")
            parts.append(f'<additional_context category="{category}" id="{item.get("id") or ""}">\n'
                         f'{item["content"]}\n</additional_context>\n')
    if not parts:
        return ""
    return "The user added this context:\n" + "".join(parts) + "\n"


# -- chat slash commands: POST /v1/prompts/chat/{tool} ------------------------------------------------------
def tool(body: dict, model: ModelConfig, overrides: DuoModelPrompts, name: str) -> Job:
    """The tool's inputs, as GitLab sends them, fill its template; an input the template does not name
    is not sent."""
    inputs = body.get("inputs") if body.get("inputs") is not None else {}
    inputs = _object(inputs, "inputs")
    values = {"tool": name, "input": "", "selected_text": "", "file_content": "", "language_info": ""}
    for key, value in inputs.items():
        if isinstance(key, str):
            values[key] = value if isinstance(value, str) else json.dumps(value)
    messages = [{"role": "system", "content": prompts.render(_template(overrides, "tool_system"), values)},
                {"role": "user", "content": prompts.render(_template(overrides, "tool_user"), values)}]
    return _chat(model, messages, stream=stream_flag(body))


# -- the admin's Test connection: POST /v1/prompts/model_configuration%2Fcheck --------------------------------
def check(model: ModelConfig) -> Job:
    return _chat(model, [{"role": "system", "content": prompts.CHECK_PROMPT},
                         {"role": "user", "content": prompts.CHECK_PROMPT}],
                 stream=False, max_tokens=prompts.CHECK_MAX_TOKENS)
