"""Which configured model serves a GitLab Duo request, and the refusals of a Duo request's body.

GitLab sends the self-hosted model it knows: its family as ``model_name`` (or ``model_metadata.name``),
its endpoint, API key and ``identifier`` (``custom_openai/<model>``) (../shared/duo-protocol.md 1).
The endpoint and the key are never used: the gateway calls its own configured upstreams with its
own keys. The model is, in this order: the one ``duo.<feature>`` names, the configured model the
identifier names (the part after its provider's ``/``), the configured model named like GitLab's
``model_name``. None of them: a 422 whose message GitLab shows.
"""

from __future__ import annotations

from shared.config import GatewayConfig, ModelConfig
from shared.errors import GatewayError


class DuoInvalid(GatewayError):
    """A Duo request the gateway cannot serve as sent: FastAPI's 422, whose ``detail[0].msg`` GitLab
    shows to the admin (ee/lib/gitlab/llm/ai_gateway/self_hosted_models/tasks/model_config_check.rb)."""

    status = 422
    code = "invalid_duo_request"
    openai_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    default_message = "The request is not one GitLab Duo sends."


class DuoModelUnmapped(DuoInvalid):
    code = "duo_model_unmapped"


def identifier_name(identifier: object) -> str | None:
    """The model an identifier names: ``custom_openai/<name>`` (any ``<provider>/<name>``) or a bare name."""
    if not isinstance(identifier, str) or not identifier.strip():
        return None
    return identifier.strip().split("/", 1)[-1]


def first_configured(config: GatewayConfig, candidates) -> ModelConfig | None:
    """The configured model the first of ``candidates`` (names, or anything else GitLab sent) that
    names one names, or None."""
    for candidate in candidates:
        model = config.model(candidate) if isinstance(candidate, str) and candidate else None
        if model is not None:
            return model
    return None


def mapped_model(config: GatewayConfig, feature: str | None, *, name: object, identifier: object) -> ModelConfig:
    """The configured model that serves ``feature`` (None: only what GitLab names counts)."""
    chosen = config.duo.features.get(feature) if feature else None
    model = first_configured(config, (chosen, identifier_name(identifier), name))
    if model is not None:
        return model
    what = f"GitLab Duo's {feature.replace('_', ' ')}" if feature else "This self-hosted model"
    raise DuoModelUnmapped(
        f"{what} maps to no model of this AI gateway: give the self-hosted model the identifier "
        "custom_openai/<model> naming a model in the gateway's config"
        + (f", or name one in its duo.{feature}." if feature else "."), param="model_metadata")
