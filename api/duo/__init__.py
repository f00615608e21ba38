"""GitLab Duo Self-Hosted: this gateway as the instance's "Local AI Gateway URL" (README, "GitLab Duo
Self-Hosted"). ``routes`` gives the app the paths GitLab's own AI gateway serves and GitLab calls."""

from __future__ import annotations

from api.duo.check import ModelCheck
from api.duo.resources import (
    ChatAgent,
    ChatTool,
    CodeCompletions,
    CodeGenerations,
    DocsSearch,
    Duo,
    Healthz,
    UserAccessToken,
)


def routes(duo: Duo) -> dict[str, object]:
    """Path -> resource. The model check's path is ``/v1/prompts/model_configuration%2Fcheck`` on the
    wire: the server decodes ``%2F`` in the path it hands the app (gunicorn's PATH_INFO, as the
    WSGI spec has it), so it is routed as two segments."""
    completions = CodeCompletions(duo)
    return {
        "/monitoring/healthz": Healthz(),
        "/v1/prompts/model_configuration/check": ModelCheck(duo),
        "/v2/code/completions": completions,
        "/v2/completions": completions,
        "/v3/code/completions": CodeGenerations(duo, events=False),
        "/v4/code/suggestions": CodeGenerations(duo, events=True),
        "/v2/chat/agent": ChatAgent(duo),
        "/v1/prompts/chat/{tool}": ChatTool(duo),
        "/v1/code/user_access_token": UserAccessToken(),
        "/v1/search/gitlab-docs": DocsSearch(duo),
    }
