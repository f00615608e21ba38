"""The prompts a GitLab Duo request becomes: templates (``string.Template``), shipped defaults and the
fill-in-the-middle (FIM) families.

GitLab's own AI gateway builds the model's prompt from what GitLab sends (its prompt definitions,
ai_gateway/prompts/definitions/ in gitlab-org/modelops/applied-ml/code-suggestions/ai-assist, read at
eee38f6f45 of a mirror): code completion is fill-in-the-middle with a template per model family
(code_suggestions/completions/<family>/1.0.0.yml), or a chat prompt for models without FIM; code
generation and chat are chat prompts. This gateway does the same with the defaults below, each
overridable per configured model in ``duo.prompts.<model>`` (``shared.config_duo``) without a release.

A template's ``$name`` placeholders are filled by ``render`` (``safe_substitute``: text a template does
not know stays as written); the values are inserted verbatim, never read as templates themselves.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

# -- fill-in-the-middle, through an OpenAI-compatible /v1/completions -------------------------------


@dataclass(frozen=True)
class FimFamily:
    template: str  # the prompt: $prefix, $suffix, $file_name, $language
    stop: tuple[str, ...] = ()
    max_tokens: int = 128
    temperature: float | None = None


# GitLab's family names (the self-hosted model's ``model`` enum, ee/app/models/ai/self_hosted_model.rb, and
# the completions model names of ai_gateway/code_suggestions/base.py) with the prompt, stop words and
# parameters of each one's completions definition in GitLab's AI gateway.
FIM_FAMILIES: dict[str, FimFamily] = {
    "codestral": FimFamily("<s>[SUFFIX]${suffix}[PREFIX]${prefix}",
                           ("[INST]", "[/INST]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]"), 64, 0.32),
    "codellama": FimFamily("<PRE> ${prefix} <SUF> ${suffix} <MID>", ("<PRE>", "<SUF>", "<MID>", "<EOT>"), 128, 0.95),
    "codegemma": FimFamily("<|fim_prefix|>${prefix}<|fim_suffix|>${suffix}<|fim_middle|>",
                           ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_separator|>"), 128, 0.95),
    "deepseekcoder": FimFamily("<｜fim▁begin｜>${prefix}<｜fim▁hole｜>${suffix}<｜fim▁end｜>", (), 128),
    "qwen2.5-coder": FimFamily("<|fim_prefix|>${prefix}<|fim_suffix|>${suffix}<|fim_middle|>",
                               ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>", "<|repo_name|>",
                                "<|file_sep|>", "<|im_start|>", "<|im_end|>", "\n\n"), 48, 0.95),
}
# Other spellings GitLab uses for a family (ai_gateway/code_suggestions/base.py: qwen2p5-coder-7b;
# codestral-2501 and codestral-2508 are Codestral versions).
FAMILY_ALIASES = {"qwen2p5-coder-7b": "qwen2.5-coder", "qwen2p5-coder": "qwen2.5-coder",
                  "codestral-2501": "codestral", "codestral-2508": "codestral"}


def fim_family(name: object) -> str | None:
    """The FIM family ``name`` (GitLab's model family, or a config's ``family``) stands for, or None
    when the family has no FIM template (mistral, llama3, gpt, claude_3, general...: a chat prompt)."""
    if not isinstance(name, str) or not name:
        return None
    key = name.strip().lower()
    key = FAMILY_ALIASES.get(key, key)
    return key if key in FIM_FAMILIES else None


# -- chat prompts -------------------------------------------------------------------------------------
# Code completion on a model without FIM (and on every anthropic or vertex model): GitLab's AI gateway's
# code_suggestions/completions/system/1.0.0.jinja, with the prefix and suffix as in its user template.
COMPLETION_SYSTEM = (
    "You are a code completion tool that performs Fill-in-the-middle. Your task is to complete the $language "
    "code between the given prefix and suffix inside the file '$file_name'. Your task is to provide valid code "
    "without any additional explanations, comments, or feedback.\n\n"
    "Important:\n"
    "- You MUST NOT output any additional human text or explanation.\n"
    "- You MUST output code exclusively.\n"
    "- The suggested code MUST work by simply concatenating to the provided code.\n"
    "- You MUST not include any sort of markdown markup or language identifiers, eg ```ruby, ```python.\n"
    "- You MUST NOT repeat or modify any part of the prefix or suffix.\n"
    "- You MUST only provide the missing code that fits between them.\n\n"
    "If you are not able to complete code based on the given instructions, return an empty result.")
COMPLETION_USER = "<prefix>\n$prefix\n</prefix>\n\n<suffix>\n$suffix\n</suffix>"

# Code generation: GitLab's AI gateway's self-hosted generation prompt
# (code_suggestions/generations/jinja_template/self_hosted/{system,user}/1.0.0.jinja and the system
# instructions section they include), with the related files, snippets and libraries GitLab sends.
GENERATION_SYSTEM = (
    "You are a tremendously accurate and skilled coding autocomplete agent. We want to generate new $language "
    "code inside the file '$file_name' based on instructions from the user.\n\n"
    "${related}"
    "The new code you will generate will start at the position of the cursor, which is currently indicated "
    "by the {{cursor}} tag.\nIn your process, first, review the existing code to understand its logic and "
    "format. Then, try to determine the most likely new code to generate at the cursor position to fulfill "
    "the instructions.\n\n"
    "When generating the new code, please ensure the following:\n"
    "1. It is valid $language code.\n"
    "2. It matches the existing code's variable, parameter and function names.\n"
    "3. It does not repeat any existing code.\n"
    "4. Do not generate code that is irrelevant to the instructions provided and the context you already have.\n\n"
    "Return only the new code and nothing else. We will then insert this at the {{cursor}} position.\n"
    "If you are not able to write code based on the given instructions or if the context is not clear, "
    "return an empty result instead.")
GENERATION_USER = (
    "## Existing code:\n\n$prefix{{cursor}}$suffix\n\n## Instruction to generate the new code:\n\n$instruction\n\n"
    "Don't try to generate complete code just generate what is instructed.\n\n"
    "Don't repeat the existing code in your response.\n\nJust respond with code without any human text.")
GENERATION_DEFAULT_INSTRUCTION = "Generate the best possible code based on instructions."

# Duo Chat: the conversation as GitLab sends it, with this system prompt; the page the user is on, the
# file open in the IDE and the additional context GitLab attached go with the newest question.
CHAT_SYSTEM = (
    "You are GitLab Duo Chat, an AI assistant for software development in GitLab. Answer the user's "
    "questions directly, accurately and concisely. Format code in Markdown code blocks. You cannot read "
    "GitLab issues, epics, merge requests, pipelines or other resources beyond what is given to you here.")
CHAT_USER = "$context$current_file$additional_context$content"

# Chat slash commands (/explain, /tests, /refactor, /fix...): GitLab sends the tool's inputs; the user
# template is GitLab's AI gateway's chat/explain_code/user/1.0.0.jinja, which the other code tools share in
# shape. $tool is the tool's name (explain_code, write_tests...).
TOOL_SYSTEM = ("You are GitLab Duo Chat, an AI assistant for software development. Carry out the user's "
               "request ($tool) on the code they selected. Format code in Markdown code blocks.")
TOOL_USER = ("$file_content\nHere is the code user selected:\n<selected_code>\n  $selected_text\n</selected_code>\n\n"
             "$input\nAny code blocks in response should be formatted in markdown.")

# The admin's "Test connection": GitLab's AI gateway's model_configuration/check prompt (max_tokens 16).
CHECK_PROMPT = "Just say hello."
CHECK_MAX_TOKENS = 16

# What ``duo.prompts.<model>`` may override, with the placeholders each one is given.
TEMPLATES: dict[str, tuple[str, frozenset[str]]] = {
    "fim": ("", frozenset({"prefix", "suffix", "file_name", "language"})),
    "completion_system": (COMPLETION_SYSTEM, frozenset({"prefix", "suffix", "file_name", "language"})),
    "completion_user": (COMPLETION_USER, frozenset({"prefix", "suffix", "file_name", "language"})),
    "generation_system": (GENERATION_SYSTEM, frozenset({"prefix", "suffix", "file_name", "language", "instruction",
                                                       "related"})),
    "generation_user": (GENERATION_USER, frozenset({"prefix", "suffix", "file_name", "language", "instruction",
                                                   "related"})),
    "chat_system": (CHAT_SYSTEM, frozenset({"unavailable_resources"})),
    "chat_user": (CHAT_USER, frozenset({"content", "context", "current_file", "additional_context"})),
    "tool_system": (TOOL_SYSTEM, frozenset({"tool"})),
    "tool_user": (TOOL_USER, frozenset({"tool", "input", "selected_text", "file_content", "language_info"})),
}
# Placeholders a tool template may use beyond its own: every input GitLab sends for that tool.
OPEN_TEMPLATES = frozenset({"tool_user"})


def template_problem(name: str, text: str) -> str | None:
    """Why ``text`` cannot be the ``name`` template, or None."""
    template = string.Template(text)
    if not template.is_valid():
        return "is not a valid template: a '$' must start $name, ${name} or $$"
    allowed = TEMPLATES[name][1]
    unknown = sorted(set(template.get_identifiers()) - allowed)
    if unknown and name not in OPEN_TEMPLATES:
        return f"names ${unknown[0]}, which this template is not given (it has: {', '.join(sorted(allowed))})"
    return None


def render(text: str, values: dict[str, str]) -> str:
    return string.Template(text).safe_substitute(values)


# -- languages, as GitLab's AI gateway names them (ai_gateway/code_suggestions/processing/ops.py) ----------
_LANGUAGES = {
    "c": "C", "h": "C", "cc": "C++", "cpp": "C++", "cxx": "C++", "hpp": "C++", "cs": "C#", "css": "CSS",
    "go": "Go", "java": "Java", "js": "JavaScript", "jsx": "JavaScript", "mjs": "JavaScript", "kt": "Kotlin",
    "kts": "Kotlin", "php": "PHP", "py": "Python", "rb": "Ruby", "rs": "Rust", "scala": "Scala", "sh": "Shell",
    "bash": "Shell", "sql": "SQL", "swift": "Swift", "ts": "TypeScript", "tsx": "TypeScript", "vue": "Vue",
    "html": "HTML", "md": "Markdown", "yaml": "YAML", "yml": "YAML", "json": "JSON", "tf": "Terraform",
    "lua": "Lua", "dart": "Dart", "ex": "Elixir", "exs": "Elixir", "hs": "Haskell", "r": "R", "pl": "Perl",
}


def language_of(file_name: str | None) -> str:
    """The programming language a file name says, or "" when its extension is not known."""
    if not file_name or "." not in file_name:
        return ""
    return _LANGUAGES.get(file_name.rsplit(".", 1)[1].lower(), "")
